"""Float64 reference of RWKV-7 ("x070"), written from docs/rwkv-spec.md section 6.

This is the oracle every engine test compares against. It is deliberately plain:
one token at a time, float64 throughout, no batching, no chunking.
"""
import numpy as np

LN_EPS = 1e-5
GN_EPS = 64e-5
DECAY_SCALE = np.exp(-0.5)  # exp(-e^-0.5 * sigmoid(w)), spec 6.2


def layer_norm(x, w, b):
    mu = x.mean()
    var = ((x - mu) ** 2).mean()  # biased variance
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b


def group_norm(y, n_head, w, b):
    g = y.reshape(n_head, -1)
    mu = g.mean(axis=1, keepdims=True)
    var = ((g - mu) ** 2).mean(axis=1, keepdims=True)
    return ((g - mu) / np.sqrt(var + GN_EPS)).reshape(-1) * w + b


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class Rwkv7:
    """`tensors`: official names -> float64 arrays (already upcast from the file dtype)."""

    def __init__(self, tensors):
        t = {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}
        self.vocab, self.n_embd = t["emb.weight"].shape
        self.n_layer = 1 + max(int(k.split(".")[1]) for k in t if k.startswith("blocks."))
        self.n_head, self.head_size = t["blocks.0.att.r_k"].shape
        self.emb = np.stack([layer_norm(row, t["blocks.0.ln0.weight"], t["blocks.0.ln0.bias"])
                             for row in t["emb.weight"]])
        self.t = t

    def vec(self, name):
        return self.t[name].reshape(-1)

    def init_state(self):
        C, H, N = self.n_embd, self.n_head, self.head_size
        return [[np.zeros(C), np.zeros((H, N, N)), np.zeros(C)] for _ in range(self.n_layer)]

    def forward(self, token, state):
        """Advances `state` in place by one token; returns the logits (float64)."""
        return self.forward_x(self.emb[token].copy(), state)

    def forward_row(self, row, state):
        """As forward, for an embedding row from outside the table (VisualRWKV's image rows): it
        goes through blocks.0.ln0 as the table's rows do."""
        return self.forward_x(layer_norm(np.asarray(row, np.float64), self.vec("blocks.0.ln0.weight"),
                                         self.vec("blocks.0.ln0.bias")), state)

    def forward_x(self, x, state):
        H, N = self.n_head, self.head_size
        v_first = None
        for l in range(self.n_layer):
            p = f"blocks.{l}."
            a = p + "att."
            z = layer_norm(x, self.vec(p + "ln1.weight"), self.vec(p + "ln1.bias"))
            delta = state[l][0] - z
            state[l][0] = z
            xr, xw, xk, xv, xa, xg = (z + delta * self.vec(a + "x_" + s) for s in "rwkvag")
            r = self.t[a + "receptance.weight"] @ xr
            k = self.t[a + "key.weight"] @ xk
            v = self.t[a + "value.weight"] @ xv
            w = self.vec(a + "w0") + np.tanh(xw @ self.t[a + "w1"]) @ self.t[a + "w2"]
            d = np.exp(-DECAY_SCALE * sigmoid(w))
            alpha = sigmoid(self.vec(a + "a0") + (xa @ self.t[a + "a1"]) @ self.t[a + "a2"])
            g = sigmoid(xg @ self.t[a + "g1"]) @ self.t[a + "g2"]
            kk = (k * self.vec(a + "k_k")).reshape(H, N)
            kk = kk / np.maximum(np.linalg.norm(kk, axis=1, keepdims=True), 1e-12)
            k = k * (1 + (alpha - 1) * self.vec(a + "k_a"))
            if l == 0:
                v_first = v
            else:
                v = v + (v_first - v) * sigmoid(self.vec(a + "v0") + (xv @ self.t[a + "v1"]) @ self.t[a + "v2"])
            S = state[l][1]  # [H][value i][key j]
            rh, kh, vh = r.reshape(H, N), k.reshape(H, N), v.reshape(H, N)
            dh, ah = d.reshape(H, N), alpha.reshape(H, N)
            y = np.zeros((H, N))
            for h in range(H):
                sa = S[h] @ (-kk[h])
                S[h] = S[h] * dh[h][None, :] + np.outer(sa, kk[h] * ah[h]) + np.outer(vh[h], kh[h])
                y[h] = S[h] @ rh[h]
            y = group_norm(y.reshape(-1), H, self.vec(a + "ln_x.weight"), self.vec(a + "ln_x.bias"))
            bonus = (rh * kh * self.t[a + "r_k"]).sum(axis=1, keepdims=True) * vh
            y = y + bonus.reshape(-1)
            x = x + self.t[a + "output.weight"] @ (y * g)

            f = p + "ffn."
            z = layer_norm(x, self.vec(p + "ln2.weight"), self.vec(p + "ln2.bias"))
            delta = state[l][2] - z
            state[l][2] = z
            xk = z + delta * self.vec(f + "x_k")
            x = x + self.t[f + "value.weight"] @ (np.maximum(self.t[f + "key.weight"] @ xk, 0) ** 2)
        x = layer_norm(x, self.vec("ln_out.weight"), self.vec("ln_out.bias"))
        return self.t["head.weight"] @ x

    def logits_sequence(self, tokens):
        """Logits of every position of `tokens`, fed one at a time from the zero state."""
        state = self.init_state()
        return np.stack([self.forward(tok, state) for tok in tokens])
