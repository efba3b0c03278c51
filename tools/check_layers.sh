#!/usr/bin/env bash
# usage: check_layers.sh [SOURCE_ROOT]
# The layers build on each other: core -> kernels -> infer -> train -> tools, with
# data beside infer (on core and kernels). A file includes headers of its own layer
# and of the layers below, never above: the parser in core/ stays usable (and
# fuzzable) without the op library, the op library without the models. fuzz/ links
# core/ alone. Fails naming every include that reaches up.
set -euo pipefail
cd "${1:-.}"
declare -A allowed=(
  [core]="core"
  [kernels]="core kernels"
  [infer]="core kernels infer"
  [data]="core kernels data"
  [train]="core kernels infer data train"
  [fuzz]="core"
)
bad=0
for layer in "${!allowed[@]}"; do
  while IFS= read -r hit; do
    file=${hit%%:*} rest=${hit#*:}
    line=${rest%%:*} text=${rest#*:}
    target=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]*)".*/\1/' <<<"$text")
    case " ${allowed[$layer]} " in
      *" ${target%%/*} "*) ;;
      *) echo "$file:$line: $layer/ includes $target (a $layer/ file may include only ${allowed[$layer]// /, })" >&2
         bad=1 ;;
    esac
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*/' "$layer" \
             --include='*.c' --include='*.h' --include='*.cu' --include='*.cuh' --include='*.cpp' || true)
done
exit $bad
