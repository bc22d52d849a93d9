#!/usr/bin/env python3
"""PyTorch contender for bench/competitors.bench.ts: BERT in plain torch.nn, eager, fp32 and
torch.quantization.quantize_dynamic int8, on the same safetensors weights and token ids as bertq.

torch 1.13 (Debian's python3-torch) has no `transformers`, so the model is written out here, layer for
layer as Hugging Face's BertModel (post-LayerNorm, exact-erf gelu, additive -10000 mask), and the
vectors it returns are checked against bertq's by the caller (cosine), so a wrong model cannot pass
as a fast one.

It serves the caller one JSON line per request on stdin, one JSON line per answer on stdout, so the
caller can interleave its measurements with bertq's and every contender sees the same machine load:
  {"model": folder, "threads": n, "precisions": [p]} -> {"torch": version, "backend": engine}
                                                        (or {"skipped": why} when torch is missing)
  {"case": name, "ids": [[...]], "batch": b}          -> {"ok": true}
  {"vectors": precision, "case": name}                -> {"vectors": [[...], ...]} (first 4 rows)
  {"measure": precision, "case": name, "seconds": s}  -> {"sent_per_s": x}
precision is float32 (the BLAS torch was built with), float32-onednn or int8 (quantize_dynamic).
The caller runs one process per precision: in one process, which precisions ran before changes how
fast the next one runs (Debian's torch 1.13 here: int8 152-171 sent/s alone, 42-44 after float32-onednn
had run), so each gets a process of its own, as a user running only that one would have.
"""
import copy
import json
import math
import struct
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torch.utils.mkldnn
except ImportError as e:  # the caller prints "skipped: no torch"
    print(json.dumps({"skipped": f"no torch for {sys.executable}: {e}"}))
    sys.exit(0)


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", f"{name}: {meta['dtype']}"
        a, b = meta["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"]).copy())
    return out


class Layer(torch.nn.Module):
    def __init__(self, h, inter, heads, eps):
        super().__init__()
        self.heads = heads
        self.query = torch.nn.Linear(h, h)
        self.key = torch.nn.Linear(h, h)
        self.value = torch.nn.Linear(h, h)
        self.attn_out = torch.nn.Linear(h, h)
        self.attn_ln = torch.nn.LayerNorm(h, eps=eps)
        self.inter = torch.nn.Linear(h, inter)
        self.out = torch.nn.Linear(inter, h)
        self.out_ln = torch.nn.LayerNorm(h, eps=eps)

    def forward(self, x, mask_add):
        b, s, h = x.shape
        d = h // self.heads
        split = lambda t: t.view(b, s, self.heads, d).transpose(1, 2)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + mask_add, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(b, s, h)
        x = self.attn_ln(self.attn_out(ctx) + x)
        return self.out_ln(self.out(F.gelu(self.inter(x))) + x)


class Bert(torch.nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        h = cfg["hidden_size"]
        self.word = torch.nn.Embedding.from_pretrained(w["embeddings.word_embeddings.weight"])
        self.pos = torch.nn.Embedding.from_pretrained(w["embeddings.position_embeddings.weight"])
        self.token_type = torch.nn.Embedding.from_pretrained(w["embeddings.token_type_embeddings.weight"])
        self.ln = torch.nn.LayerNorm(h, eps=cfg["layer_norm_eps"])
        self.ln.weight.data, self.ln.bias.data = w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]
        self.layers = torch.nn.ModuleList()
        names = {
            "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
            "attn_out": "attention.output.dense", "attn_ln": "attention.output.LayerNorm",
            "inter": "intermediate.dense", "out": "output.dense", "out_ln": "output.LayerNorm",
        }
        for i in range(cfg["num_hidden_layers"]):
            layer = Layer(h, cfg["intermediate_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"])
            for attr, hf in names.items():
                mod = getattr(layer, attr)
                mod.weight.data = w[f"encoder.layer.{i}.{hf}.weight"]
                mod.bias.data = w[f"encoder.layer.{i}.{hf}.bias"]
            self.layers.append(layer)

    def forward(self, ids, mask):
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.ln(self.word(ids) + self.pos(pos) + self.token_type(torch.zeros_like(ids)))
        mask_add = ((1.0 - mask.float()) * -10000.0)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask_add)
        m = mask.float().unsqueeze(-1)
        return (x * m).sum(1) / (m.sum(1) + 1e-10)  # REDUCE_MEAN of the last layer


def rate(fn, sentences, min_seconds):
    """Sentences per second over one window of at least min_seconds (and at least one run)."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if time.perf_counter() - t0 >= min_seconds:
            break
    return sentences * n / (time.perf_counter() - t0)


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    req = json.loads(sys.stdin.readline())
    torch.set_num_threads(req["threads"])
    cfg = json.load(open(f"{req['model']}/config.json"))
    fp32 = Bert(cfg, read_safetensors(f"{req['model']}/model.safetensors")).eval()
    builders = {
        "float32": lambda: fp32,
        # fp32 Linear through oneDNN (MKL-DNN) kernels instead of the BLAS torch was built with.
        "float32-onednn": lambda: torch.utils.mkldnn.to_mkldnn(copy.deepcopy(fp32)),
        "int8": lambda: torch.quantization.quantize_dynamic(fp32, {torch.nn.Linear}, dtype=torch.qint8),
    }
    models = {p: builders[p]() for p in req.get("precisions", list(builders))}
    send({"torch": torch.__version__, "backend": torch.backends.quantized.engine})
    cases, warm = {}, set()
    with torch.inference_mode():
        for line in sys.stdin:
            req = json.loads(line)
            if "case" in req and "ids" in req:
                ids = torch.tensor(req["ids"], dtype=torch.long)
                mask = torch.ones_like(ids)
                b = req["batch"]
                cases[req["case"]] = [(ids[i : i + b], mask[i : i + b]) for i in range(0, len(ids), b)]
                send({"ok": True})
            elif "vectors" in req:
                model, chunks = models[req["vectors"]], cases[req["case"]]
                send({"vectors": torch.cat([model(i, m) for i, m in chunks])[:4].tolist()})
            elif "measure" in req:
                model, chunks = models[req["measure"]], cases[req["case"]]

                def run_all():
                    for i, m in chunks:
                        model(i, m)

                if (req["measure"], req["case"]) not in warm:
                    run_all()
                    warm.add((req["measure"], req["case"]))
                send({"sent_per_s": rate(run_all, sum(len(i) for i, _ in chunks), req["seconds"])})
            else:
                send({"error": f"unknown request {sorted(req)}"})


main()
