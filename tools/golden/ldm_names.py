"""diffusers names -> the original LDM/CompVis single-file names of SD1.x/2.x checkpoints.

Community checkpoints (v1-5-pruned-emaonly.safetensors and the files derived from it)
keep the names of the CompVis code base: one file, three prefixes:

  model.diffusion_model.            the UNet
  first_stage_model.                the VAE
  cond_stage_model.transformer.     the CLIP text encoder (transformers' own names)

The facts below come from diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py
and diffusers/loaders/single_file_utils.py; the code is written here from the
structure, for any number of blocks and layers per block. models.py checks the result
by converting back with diffusers' own converters.

UNet (L = layers_per_block, i = block, j = layer in block):
  time_embedding.linear_1/2        time_embed.0/2
  conv_in                          input_blocks.0.0
  down_blocks.i.resnets.j          input_blocks.{1 + i(L+1) + j}.0
  down_blocks.i.attentions.j       input_blocks.{1 + i(L+1) + j}.1
  down_blocks.i.downsamplers.0.conv  input_blocks.{(i+1)(L+1)}.0.op
  mid_block.resnets.0/1            middle_block.0/2
  mid_block.attentions.0           middle_block.1
  up_blocks.i.resnets.j            output_blocks.{i(L+1) + j}.0     (up blocks have L+1 layers)
  up_blocks.i.attentions.j         output_blocks.{i(L+1) + j}.1
  up_blocks.i.upsamplers.0.conv    output_blocks.{i(L+1) + L}.{2 if the block has attention else 1}.conv
  conv_norm_out / conv_out         out.0 / out.2
  inside a resnet: norm1 in_layers.0, conv1 in_layers.2, time_emb_proj emb_layers.1,
  norm2 out_layers.0, conv2 out_layers.3, conv_shortcut skip_connection.
  Inside a transformer (norm, proj_in, transformer_blocks.k.*, proj_out) the names
  are the same on both sides, and so are the shapes: proj_in/proj_out are 1x1 convs
  in SD1 (use_linear_projection false) and linear layers in SD2 on both sides.

VAE (n = number of blocks):
  encoder.down_blocks.i.resnets.j       encoder.down.i.block.j
  encoder.down_blocks.i.downsamplers.0  encoder.down.i.downsample
  decoder.up_blocks.i.resnets.j         decoder.up.{n-1-i}.block.j   (the original
  decoder.up_blocks.i.upsamplers.0      decoder.up.{n-1-i}.upsample   counts up blocks
                                                                      from the bottom)
  {en,de}coder.mid_block.resnets.0/1    {en,de}coder.mid.block_1/2
  {en,de}coder.mid_block.attentions.0   {en,de}coder.mid.attn_1, with group_norm -> norm,
      to_q/to_k/to_v -> q/k/v, to_out.0 -> proj_out; those four weights are 1x1 convs
      [C, C, 1, 1] in the original and linear [C, C] in diffusers.
  {en,de}coder.conv_norm_out            {en,de}coder.norm_out
  resnets: conv_shortcut -> nin_shortcut; everything else keeps its name.
"""
import re

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_resnet(rest):
    layer, _, param = rest.rpartition(".")
    return f"{_UNET_RESNET[layer]}.{param}"


def unet_key(key, config):
    """The LDM name (without prefix) of a diffusers UNet2DConditionModel parameter."""
    L = config["layers_per_block"]
    for old, new in _UNET_TOP.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    m = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        n = 1 + i * (L + 1) + j
        return f"input_blocks.{n}.0.{_unet_resnet(rest)}" if kind == "resnets" else f"input_blocks.{n}.1.{rest}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * (L + 1)}.0.op.{m[2]}"
    m = re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", key)
    if m:
        return f"middle_block.{2 * int(m[1])}.{_unet_resnet(m[2])}"
    m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key)
    if m:
        return f"middle_block.1.{m[1]}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        n = i * (L + 1) + j
        return f"output_blocks.{n}.0.{_unet_resnet(rest)}" if kind == "resnets" else f"output_blocks.{n}.1.{rest}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key)
    if m:
        i = int(m[1])
        # The upsampler follows the block's last layer: after its resnet (.1) in a
        # plain block, after the resnet and the transformer (.2) in a cross-attention one.
        slot = 2 if "CrossAttn" in config["up_block_types"][i] else 1
        return f"output_blocks.{i * (L + 1) + L}.{slot}.conv.{m[2]}"
    raise KeyError(f"ldm_names: no LDM name for UNet parameter {key}")


def vae_key(key, config):
    """The LDM name (without prefix) of a diffusers AutoencoderKL parameter."""
    n = len(config["block_out_channels"])
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    part, _, rest = key.partition(".")  # encoder / decoder
    if part not in ("encoder", "decoder"):
        raise KeyError(f"ldm_names: no LDM name for VAE parameter {key}")
    m = re.fullmatch(r"(conv_in|conv_out|conv_norm_out)\.(\w+)", rest)
    if m:
        return f"{part}.{'norm_out' if m[1] == 'conv_norm_out' else m[1]}.{m[2]}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return f"{part}.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.(.+)", rest)
    if m:
        return f"{part}.down.{m[1]}.downsample.{m[2]}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return f"{part}.up.{n - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", rest)
    if m:
        return f"{part}.up.{n - 1 - int(m[1])}.upsample.{m[2]}"
    m = re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", rest)
    if m:
        return f"{part}.mid.block_{int(m[1]) + 1}.{m[2].replace('conv_shortcut', 'nin_shortcut')}"
    m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)\.(weight|bias)", rest)
    if m and m[1] in _VAE_ATTN:
        return f"{part}.mid.attn_1.{_VAE_ATTN[m[1]]}.{m[2]}"
    raise KeyError(f"ldm_names: no LDM name for VAE parameter {key}")


def _vae_value(ldm_name, tensor):
    # The original's attention projections are 1x1 convolutions.
    if re.search(r"\.mid\.attn_1\.(q|k|v|proj_out)\.weight$", ldm_name) and tensor.dim() == 2:
        return tensor.reshape(*tensor.shape, 1, 1)
    return tensor


def to_single_file(unet_sd, unet_config, vae_sd, vae_config, te_sd, position_ids=None):
    """One dict in the single-file layout from the three diffusers state dicts.

    position_ids, when given, is stored as cond_stage_model.transformer.text_model.
    embeddings.position_ids, the buffer that SD1.x files carry and loaders ignore.
    """
    out = {}

    def put(name, value):
        if name in out:
            raise KeyError(f"ldm_names: two parameters map to {name}")
        out[name] = value

    for k, v in unet_sd.items():
        put(UNET_PREFIX + unet_key(k, unet_config), v)
    for k, v in vae_sd.items():
        name = VAE_PREFIX + vae_key(k, vae_config)
        put(name, _vae_value(name, v))
    for k, v in te_sd.items():
        put(CLIP_PREFIX + k, v)
    if position_ids is not None:
        put(CLIP_PREFIX + "text_model.embeddings.position_ids", position_ids)
    return out
