"""PyTorch references: add, sub, mul (broadcasting), scale, sum, mean."""


def add(ins, params):
    return [ins["a"] + ins["b"]]


def sub(ins, params):
    return [ins["a"] - ins["b"]]


def mul(ins, params):
    return [ins["a"] * ins["b"]]


def scale(ins, params):
    return [ins["x"] * float(params["s"])]


def reduce(fn, ins, params):
    x = ins["x"]
    if params.get("all") == "1":
        return [fn(x).reshape(1)]
    return [fn(x, dim=int(params.get("axis", "0")), keepdim=True)]


def sum_(ins, params):
    return reduce(lambda x, **kw: x.sum(**kw), ins, params)


def mean(ins, params):
    return reduce(lambda x, **kw: x.mean(**kw), ins, params)


REFS = {"add": add, "sub": sub, "mul": mul, "scale": scale, "sum": sum_, "mean": mean}
