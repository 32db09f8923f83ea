"""Float64 references of RWKV-4, RWKV-5 (5.0, 5.1, 5.2, Eagle) and RWKV-6 (Finch), written from
docs/rwkv-spec.md sections 3, 4 and 5: one token at a time, float64 throughout, as rwkv7_ref.py.
"""
import numpy as np

from rwkv7_ref import group_norm, layer_norm, sigmoid


def silu(x):
    return x * sigmoid(x)


class _Base:
    """`tensors`: official names -> arrays (already upcast from the file dtype)."""

    def __init__(self, tensors):
        t = {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}
        self.vocab, self.n_embd = t["emb.weight"].shape
        self.n_layer = 1 + max(int(k.split(".")[1]) for k in t if k.startswith("blocks."))
        self.emb = np.stack([layer_norm(row, t["blocks.0.ln0.weight"].reshape(-1), t["blocks.0.ln0.bias"].reshape(-1))
                             for row in t["emb.weight"]])
        self.t = t

    def vec(self, name):
        return self.t[name].reshape(-1)

    def ln(self, x, name):
        return layer_norm(x, self.vec(name + ".weight"), self.vec(name + ".bias"))

    def channel_mix_v4(self, l, x, state, s_ffn):
        """v4/v5 channel mix: mixes weight the current token (spec 3.2)."""
        f = f"blocks.{l}.ffn."
        z = self.ln(x, f"blocks.{l}.ln2")
        mk, mr = self.vec(f + "time_mix_k"), self.vec(f + "time_mix_r")
        prev = state[l][s_ffn]
        xk, xr = z * mk + prev * (1 - mk), z * mr + prev * (1 - mr)
        state[l][s_ffn] = z
        kv = self.t[f + "value.weight"] @ (np.maximum(self.t[f + "key.weight"] @ xk, 0) ** 2)
        return x + sigmoid(self.t[f + "receptance.weight"] @ xr) * kv

    def head(self, x):
        return self.t["head.weight"] @ self.ln(x, "ln_out")

    def logits_sequence(self, tokens):
        state = self.init_state()
        return np.stack([self.forward(tok, state) for tok in tokens])


class Rwkv4(_Base):
    def init_state(self):
        C = self.n_embd
        return [[np.zeros(C), np.zeros(C), np.zeros(C), np.full(C, -1e30), np.zeros(C)] for _ in range(self.n_layer)]

    def forward(self, token, state):
        x = self.emb[token].copy()
        for l in range(self.n_layer):
            a = f"blocks.{l}.att."
            z = self.ln(x, f"blocks.{l}.ln1")
            s_att, aa, bb, pp, _ = state[l]
            mk, mv, mr = (self.vec(a + "time_mix_" + c) for c in "kvr")
            xk, xv, xr = z * mk + s_att * (1 - mk), z * mv + s_att * (1 - mv), z * mr + s_att * (1 - mr)
            state[l][0] = z
            r = sigmoid(self.t[a + "receptance.weight"] @ xr)
            k = self.t[a + "key.weight"] @ xk
            v = self.t[a + "value.weight"] @ xv
            w, u = -np.exp(self.vec(a + "time_decay")), self.vec(a + "time_first")
            q = np.maximum(pp, u + k)
            e1, e2 = np.exp(pp - q), np.exp(u + k - q)
            wkv = (e1 * aa + e2 * v) / (e1 * bb + e2)
            q2 = np.maximum(pp + w, k)
            e1, e2 = np.exp(pp + w - q2), np.exp(k - q2)
            state[l][1], state[l][2], state[l][3] = e1 * aa + e2 * v, e1 * bb + e2, q2
            x = x + self.t[a + "output.weight"] @ (r * wkv)
            x = self.channel_mix_v4(l, x, state, 4)
        return self.head(x)


class Rwkv5(_Base):
    """v5.0 (no gate), v5.1 (gate, per-head decay) and v5.2 (gate, per-channel decay)."""

    def __init__(self, tensors):
        super().__init__(tensors)
        a = "blocks.0.att."
        td = self.t[a + "time_decay"]
        self.gated = a + "gate.weight" in self.t
        c_att = self.t[a + "key.weight"].shape[0]
        self.n_head = td.shape[0]
        self.head_size = c_att // self.n_head

    def init_state(self):
        C, H, N = self.n_embd, self.n_head, self.head_size
        return [[np.zeros(C), np.zeros((H, N, N)), np.zeros(C)] for _ in range(self.n_layer)]

    def decay_bonus(self, a):
        H, N = self.n_head, self.head_size
        d = np.exp(-np.exp(self.t[a + "time_decay"].reshape(H, -1)))
        if a + "time_faaaa" in self.t:
            u = self.t[a + "time_faaaa"].reshape(H, -1)
        else:
            u = np.exp(self.t[a + "time_first"].reshape(H, -1))
        return np.broadcast_to(d, (H, N)), np.broadcast_to(u, (H, N))

    def forward(self, token, state):
        H, N = self.n_head, self.head_size
        x = self.emb[token].copy()
        for l in range(self.n_layer):
            a = f"blocks.{l}.att."
            z = self.ln(x, f"blocks.{l}.ln1")
            s = state[l][0]
            mix = lambda c: z * self.vec(a + "time_mix_" + c) + s * (1 - self.vec(a + "time_mix_" + c))  # noqa: E731
            xk, xv, xr = mix("k"), mix("v"), mix("r")
            xg = mix("g") if self.gated else None
            state[l][0] = z
            r = (self.t[a + "receptance.weight"] @ xr).reshape(H, N)
            k = (self.t[a + "key.weight"] @ xk).reshape(H, N)
            v = (self.t[a + "value.weight"] @ xv).reshape(H, N)
            d, u = self.decay_bonus(a)
            S = state[l][1]  # [H][key i][value j]
            y = np.zeros((H, N))
            for h in range(H):
                kv = np.outer(k[h], v[h])
                y[h] = r[h] @ (S[h] + u[h][:, None] * kv)  # the old state plus the bonus
                S[h] = d[h][:, None] * S[h] + kv
            y = group_norm(y.reshape(-1), H, self.vec(a + "ln_x.weight"), self.vec(a + "ln_x.bias"))
            if self.gated:
                y = y * silu(self.t[a + "gate.weight"] @ xg)
            x = x + self.t[a + "output.weight"] @ y
            x = self.channel_mix_v4(l, x, state, 2)
        return self.head(x)


class Rwkv6(_Base):
    def __init__(self, tensors):
        super().__init__(tensors)
        self.n_head, self.head_size = self.t["blocks.0.att.time_faaaa"].shape

    def init_state(self):
        C, H, N = self.n_embd, self.n_head, self.head_size
        return [[np.zeros(C), np.zeros((H, N, N)), np.zeros(C)] for _ in range(self.n_layer)]

    def forward(self, token, state):
        H, N = self.n_head, self.head_size
        x = self.emb[token].copy()
        for l in range(self.n_layer):
            a = f"blocks.{l}.att."
            z = self.ln(x, f"blocks.{l}.ln1")
            delta = state[l][0] - z  # v6 mixes weight the previous token (spec 1)
            state[l][0] = z
            xx = z + delta * self.vec(a + "time_maa_x")
            w1, w2 = self.t[a + "time_maa_w1"], self.t[a + "time_maa_w2"]  # [C, 5 Dm], [5, Dm, C]
            hcat = np.tanh(xx @ w1).reshape(5, -1)
            m = [hcat[j] @ w2[j] for j in range(5)]  # order w, k, v, r, g
            xw, xk, xv, xr, xg = (z + delta * (self.vec(a + "time_maa_" + c) + m[j]) for j, c in enumerate("wkvrg"))
            r = (self.t[a + "receptance.weight"] @ xr).reshape(H, N)
            k = (self.t[a + "key.weight"] @ xk).reshape(H, N)
            v = (self.t[a + "value.weight"] @ xv).reshape(H, N)
            g = silu(self.t[a + "gate.weight"] @ xg)
            wd = self.vec(a + "time_decay") + np.tanh(xw @ self.t[a + "time_decay_w1"]) @ self.t[a + "time_decay_w2"]
            d = np.exp(-np.exp(wd)).reshape(H, N)
            u = self.t[a + "time_faaaa"]
            S = state[l][1]  # [H][key i][value j]
            y = np.zeros((H, N))
            for h in range(H):
                kv = np.outer(k[h], v[h])
                y[h] = r[h] @ (S[h] + u[h][:, None] * kv)
                S[h] = d[h][:, None] * S[h] + kv
            y = group_norm(y.reshape(-1), H, self.vec(a + "ln_x.weight"), self.vec(a + "ln_x.bias")) * g
            x = x + self.t[a + "output.weight"] @ y
            f = f"blocks.{l}.ffn."
            z = self.ln(x, f"blocks.{l}.ln2")
            delta = state[l][2] - z
            state[l][2] = z
            xk = z + delta * self.vec(f + "time_maa_k")
            xr = z + delta * self.vec(f + "time_maa_r")
            kv = self.t[f + "value.weight"] @ (np.maximum(self.t[f + "key.weight"] @ xk, 0) ** 2)
            x = x + sigmoid(self.t[f + "receptance.weight"] @ xr) * kv
        return self.head(x)
