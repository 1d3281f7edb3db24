# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 03: backpropagation by hand
#
# Training needs the gradient of one number, the loss $L$, with respect to
# every weight. Backpropagation computes all of them in one backward sweep
# whose cost is about twice the forward pass. It is nothing but the **chain
# rule**, applied in a disciplined order: every layer gets $\partial L /
# \partial(\text{its output})$ from the layer above and hands $\partial L /
# \partial(\text{its input})$ to the layer below.
#
# minitx writes every backward pass by hand, so every one of them can be
# wrong. This lesson shows how to derive them and how to *prove* them right:
#
# 1. the chain rule on scalars, checked with a central difference;
# 2. softmax: its full Jacobian, and the $O(C)$ trick that avoids building it;
# 3. LayerNorm: backward twice, mechanically and via the three-term formula;
# 4. softmax attention: the backward pass of $\mathrm{softmax}(QK^\top/\sqrt{d})V$;
# 5. the finite-difference checker, and why it must run in float64
#    (the V-shaped error curve).
#
# Every derivation ends with an `assert`: if a gradient is wrong, the lesson fails.

# %%
import numpy as np

from minitx.gradcheck import gradcheck
from minitx.nn import scaled_dot_product_attention_backward, scaled_dot_product_attention_forward, softmax_backward
from minitx.nn.norm import layernorm_backward, layernorm_forward
from minitx.tutorial import FAST, plt, savefig

np.set_printoptions(precision=4, suppress=True, linewidth=110)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The chain rule on scalars
#
# One neuron with a squared-error loss, written as a chain of small steps:
#
# $$z = w x + b, \qquad a = \tanh z, \qquad L = (a - y)^2.$$
#
# Backward, each step multiplies by one local derivative, in reverse order:
#
# $$\frac{\partial L}{\partial a} = 2(a - y), \quad
#   \frac{\partial L}{\partial z} = \frac{\partial L}{\partial a}(1 - a^2), \quad
#   \frac{\partial L}{\partial w} = \frac{\partial L}{\partial z}\, x, \quad
#   \frac{\partial L}{\partial b} = \frac{\partial L}{\partial z}, \quad
#   \frac{\partial L}{\partial x} = \frac{\partial L}{\partial z}\, w.$$
#
# Notice what the backward pass needs from the forward pass: $a$ (for
# $\tanh' = 1 - a^2$), $x$ and $w$. That is the **cache** every minitx
# forward function returns.

# %%
w, b, x, y = 0.7, -0.3, 1.5, 0.2


def neuron_loss(w, b, x):
    z = w * x + b
    a = np.tanh(z)
    return (a - y) ** 2


z = w * x + b
a = np.tanh(z)
L = (a - y) ** 2
dL_da = 2 * (a - y)
dL_dz = dL_da * (1 - a**2)
grads = {"w": dL_dz * x, "b": dL_dz, "x": dL_dz * w}
print(f"L = {L:.6f}, dL/dw = {grads['w']:.8f}, dL/db = {grads['b']:.8f}, dL/dx = {grads['x']:.8f}")

# %% [markdown]
# ### Checking with a central difference
#
# A derivative can be *measured* without any calculus. Taylor's theorem gives
#
# $$f(\theta \pm h) = f(\theta) \pm h f'(\theta) + \tfrac{h^2}{2} f''(\theta) \pm \tfrac{h^3}{6} f'''(\theta) + \dots$$
#
# Subtract the two and the even terms cancel:
#
# $$\frac{f(\theta + h) - f(\theta - h)}{2h} = f'(\theta) + \tfrac{h^2}{6} f'''(\theta) + O(h^4).$$
#
# The **central difference** is accurate to $O(h^2)$; the one-sided
# $(f(\theta+h) - f(\theta))/h$ only to $O(h)$. Compare with a relative error,
# $|a - n| / \max(|a|, |n|)$, so that large and small gradients are judged alike.

# %%
h = 1e-6
numeric = {
    "w": (neuron_loss(w + h, b, x) - neuron_loss(w - h, b, x)) / (2 * h),
    "b": (neuron_loss(w, b + h, x) - neuron_loss(w, b - h, x)) / (2 * h),
    "x": (neuron_loss(w, b, x + h) - neuron_loss(w, b, x - h)) / (2 * h),
}
for name in grads:
    rel = abs(grads[name] - numeric[name]) / max(abs(grads[name]), abs(numeric[name]))
    print(f"d L/d {name}: analytic {grads[name]:+.10f}   numeric {numeric[name]:+.10f}   relative error {rel:.1e}")
    assert rel < 1e-7


# %% [markdown]
# For arrays we nudge one element at a time. The function below reads the
# array *in place*, so `loss_fn` is a closure with no arguments: exactly the
# interface of `minitx.gradcheck.gradcheck`. To test a layer with many outputs
# we make a scalar out of them, $L = \sum_i G_i\, \text{out}_i$ with a fixed
# random $G$; then $\partial L/\partial\,\text{out} = G$, an arbitrary upstream
# gradient, and every output element takes part.

# %%
def central_difference(loss_fn, arr, h=1e-5):
    """dL/d arr, one element at a time: (L(arr + h e_i) - L(arr - h e_i)) / 2h. ``arr`` is perturbed in place."""
    grad = np.zeros_like(arr)
    flat, flat_grad = arr.reshape(-1), grad.reshape(-1)  # views: writing flat[i] changes arr
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + h
        loss_plus = loss_fn()
        flat[i] = original - h
        loss_minus = loss_fn()
        flat[i] = original  # always restore
        flat_grad[i] = (loss_plus - loss_minus) / (2 * h)
    return grad


def rel_error(analytic, numeric, floor=1e-5):
    """Worst elementwise |a - n| / max(|a|, |n|, floor).

    The floor (gradcheck's default too) stops a gradient that is essentially
    zero, say 1e-9 measured as 1.1e-9, from reporting a huge "relative" error
    made of rounding noise alone.
    """
    return float((np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)).max())


# %% [markdown]
# ## 2. Softmax: the Jacobian, then the trick
#
# $y_i = e^{x_i} / \sum_k e^{x_k}$. Each output depends on every input. By the
# quotient rule, with $\delta_{ij} = 1$ if $i = j$ and 0 otherwise,
#
# $$\frac{\partial y_i}{\partial x_j} = y_i(\delta_{ij} - y_j),
#   \qquad J = \mathrm{diag}(y) - y y^\top.$$
#
# Here is the whole $4 \times 4$ matrix, next to one measured column by column
# with central differences. Two things to notice: $J$ is symmetric, and every
# row sums to zero, because adding the same constant to all the $x_j$ leaves
# the softmax unchanged.

# %%
def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # (..., C); the max cancels, exp cannot overflow
    return e / e.sum(axis=-1, keepdims=True)  # (..., C)


x4 = np.array([1.0, 2.0, 0.5, -1.0])
y4 = softmax(x4)
J = np.diag(y4) - np.outer(y4, y4)  # (4, 4)

J_numeric = np.zeros((4, 4))
for j in range(4):  # column j: how every output moves when x_j moves
    e_j = np.eye(4)[j] * 1e-6
    J_numeric[:, j] = (softmax(x4 + e_j) - softmax(x4 - e_j)) / 2e-6
print("y =", y4)
print("J = diag(y) - y y^T:\n", J)
print("relative error against the measured Jacobian:", f"{rel_error(J, J_numeric):.1e}")
print("row sums:", J.sum(axis=1))
assert rel_error(J, J_numeric) < 1e-7

# %% [markdown]
# The backward pass does not need $J$, only the **vector-Jacobian product**
# $dx = J^\top dy$ (the gradient flowing down is a vector, one number per
# input). Write it out:
#
# $$dx_j = \sum_i dy_i\, y_i(\delta_{ij} - y_j) = y_j\Big(dy_j - \sum_i dy_i\, y_i\Big).$$
#
# One dot product and one elementwise product: $O(C)$ time and memory instead
# of building a $C \times C$ matrix. For a GPT-2 vocabulary ($C = 50257$) the
# Jacobian of *one* position would hold 2.5 billion numbers (10 GB in float32);
# the trick needs 50257. Same answer:

# %%
def my_softmax_backward(dy, y):
    """``[..., C], [..., C] -> [..., C]``: dx = y * (dy - sum(dy * y))."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))  # (..., C)


dy4 = rng.standard_normal(4)
print("J^T dy           :", J.T @ dy4)
print("y (dy - <dy, y>) :", my_softmax_backward(dy4, y4))
assert np.allclose(J.T @ dy4, my_softmax_backward(dy4, y4), rtol=1e-12, atol=1e-15)
assert np.allclose(softmax_backward(dy4, y4), my_softmax_backward(dy4, y4), rtol=1e-12, atol=1e-15)  # minitx's

# %% [markdown]
# The Jacobian also explains lesson 02's $1/\sqrt{d_k}$: if $y$ is nearly
# one-hot, $y_i(\delta_{ij} - y_j) \approx 0$ for every entry, so a saturated
# softmax passes back almost no gradient.

# %%
y_saturated = softmax(np.array([30.0, 0.0, -5.0, 2.0]))
print("largest |entry| of J for a saturated softmax:",
      f"{np.abs(np.diag(y_saturated) - np.outer(y_saturated, y_saturated)).max():.1e}")

# %% [markdown]
# ## 3. LayerNorm
#
# For one row $x \in \mathbb{R}^D$ (every position is normalised on its own):
#
# $$\mu = \frac1D \sum_i x_i, \quad \sigma^2 = \frac1D \sum_i (x_i - \mu)^2, \quad
#   r = \frac{1}{\sqrt{\sigma^2 + \epsilon}}, \quad \hat x_i = (x_i - \mu)\, r, \quad
#   y_i = \gamma_i \hat x_i + \beta_i.$$
#
# The parameter gradients are easy: $\gamma$ and $\beta$ touch one output
# element each per row, so $d\gamma = \sum_{\text{rows}} dy \odot \hat x$ and
# $d\beta = \sum_{\text{rows}} dy$. The input gradient is the interesting one,
# because every $\hat x_i$ depends on *every* $x_j$ through $\mu$ and $\sigma^2$.
#
# ### Route 1: mechanically, one step at a time
#
# Run the forward steps backwards, multiplying by each step's local
# derivative. The one rule to remember: **a variable used twice collects
# gradient from both uses.** Here $x_c = x - \mu$ feeds both $\sigma^2$ and
# $\hat x$.

# %%
def my_layernorm_forward(x, gamma, beta, eps=1e-5):
    """``[..., D], [D], [D] -> [..., D]``, plus the cache for backward."""
    D = x.shape[-1]
    mu = x.sum(axis=-1, keepdims=True) / D  # (..., 1)
    xc = x - mu  # (..., D)
    var = (xc**2).sum(axis=-1, keepdims=True) / D  # (..., 1), biased, as in the paper
    rstd = (var + eps) ** -0.5  # (..., 1)
    xhat = xc * rstd  # (..., D)
    y = gamma * xhat + beta  # (..., D)
    return y, (xc, var, rstd, xhat, gamma, eps)


def my_layernorm_backward_stepwise(dy, cache):
    """Every forward line, reversed. Returns ``(dx, dgamma, dbeta)``."""
    xc, var, rstd, xhat, gamma, eps = cache
    D = xc.shape[-1]
    dgamma = (dy * xhat).reshape(-1, D).sum(axis=0)  # (D,): y = gamma * xhat + beta
    dbeta = dy.reshape(-1, D).sum(axis=0)  # (D,)
    dxhat = dy * gamma  # (..., D)
    drstd = (dxhat * xc).sum(axis=-1, keepdims=True)  # (..., 1): xhat = xc * rstd, rstd shared by the row
    dxc = dxhat * rstd  # (..., D): first use of xc
    dvar = drstd * -0.5 * (var + eps) ** -1.5  # (..., 1): rstd = (var + eps)^(-1/2)
    dxc += dvar * 2 * xc / D  # (..., D): second use of xc, var = sum(xc^2) / D
    dmu = -dxc.sum(axis=-1, keepdims=True)  # (..., 1): xc = x - mu
    dx = dxc + dmu / D  # (..., D): x reaches xc directly, and through mu = sum(x) / D
    return dx, dgamma, dbeta


# %% [markdown]
# ### Route 2: the three-term formula
#
# Now differentiate $\hat x_i$ directly. Using $\partial\mu/\partial x_j = 1/D$
# and $\partial\sigma^2/\partial x_j = \frac{2}{D}(x_j - \mu)$ (the $\mu$ terms
# sum to zero), we get $\partial r/\partial x_j = -\tfrac12 r^3 \cdot \tfrac2D (x_j - \mu) = -\tfrac{r^2}{D}\hat x_j$,
# and then, by the product rule on $\hat x_i = (x_i - \mu) r$:
#
# $$\frac{\partial \hat x_i}{\partial x_j} = r\left(\delta_{ij} - \frac1D - \frac{\hat x_i \hat x_j}{D}\right).$$
#
# With $g = dy \odot \gamma$ (the gradient reaching $\hat x$), sum over $i$:
#
# $$dx_j = \sum_i g_i \frac{\partial \hat x_i}{\partial x_j}
#        = r\Big(g_j - \underbrace{\tfrac1D \textstyle\sum_i g_i}_{\text{mean}(g)}
#          - \hat x_j\, \underbrace{\tfrac1D \textstyle\sum_i g_i \hat x_i}_{\text{mean}(g \hat x)}\Big).$$
#
# Three terms, each with a meaning: $g$ is what would flow if $\mu$ and
# $\sigma$ were constants; subtracting $\text{mean}(g)$ removes the part of
# the gradient that would shift the row's mean (LayerNorm erases any shift);
# subtracting $\hat x\,\text{mean}(g\hat x)$ removes the part along $\hat x$,
# which would only rescale the row (LayerNorm erases scale too, up to
# $\epsilon$). This is what `minitx.nn.norm.layernorm_backward` implements.

# %%
def my_layernorm_backward(dy, cache):
    """The three-term formula. Returns ``(dx, dgamma, dbeta)``."""
    xc, var, rstd, xhat, gamma, eps = cache
    D = xhat.shape[-1]
    g = dy * gamma  # (..., D)
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))  # (..., D)
    dgamma = (dy * xhat).reshape(-1, D).sum(axis=0)  # (D,)
    dbeta = dy.reshape(-1, D).sum(axis=0)  # (D,)
    return dx, dgamma, dbeta


# %% [markdown]
# Now check, in four ways: the two routes against each other, both against
# our own central differences, against minitx's gradient checker, and against
# minitx's `layernorm_backward`. All in float64 (section 5 explains why).

# %%
n_rows, D = (3, 8) if FAST else (6, 16)
x_ln = rng.standard_normal((n_rows, D))  # (N, D)
gamma = 1.0 + 0.5 * rng.standard_normal(D)  # (D,)
beta = 0.5 * rng.standard_normal(D)  # (D,)
G_ln = rng.standard_normal((n_rows, D))  # (N, D): the fixed upstream gradient dL/dy


def ln_loss():
    return float((my_layernorm_forward(x_ln, gamma, beta)[0] * G_ln).sum())  # L = sum(G * y)


_, cache = my_layernorm_forward(x_ln, gamma, beta)
dx_steps, dgamma_steps, dbeta_steps = my_layernorm_backward_stepwise(G_ln, cache)
dx_ln, dgamma_ln, dbeta_ln = my_layernorm_backward(G_ln, cache)

print("route 1 vs route 2, dx:         ", f"{rel_error(dx_steps, dx_ln):.1e}")
assert rel_error(dx_steps, dx_ln) < 1e-12

numeric = {name: central_difference(ln_loss, arr) for name, arr in (("x", x_ln), ("gamma", gamma), ("beta", beta))}
for name, analytic in (("x", dx_ln), ("gamma", dgamma_ln), ("beta", dbeta_ln)):
    err = rel_error(analytic, numeric[name])
    print(f"d{name:5s} vs our central differences: {err:.1e}")
    assert err < 1e-6

result = gradcheck(ln_loss, {"x": x_ln, "gamma": gamma, "beta": beta},  # the arrays it perturbs in place
                   {"x": dx_ln, "gamma": dgamma_ln, "beta": dbeta_ln})  # the gradients we claim
print(result)
assert result.ok(1e-6), result

y_lib, cache_lib = layernorm_forward(x_ln, gamma, beta)
dx_lib, dgamma_lib, dbeta_lib = layernorm_backward(G_ln, cache_lib)
for name, mine, lib in (("x", dx_ln, dx_lib), ("gamma", dgamma_ln, dgamma_lib), ("beta", dbeta_ln, dbeta_lib)):
    np.testing.assert_allclose(mine, lib, rtol=1e-12, atol=1e-14, err_msg=f"d{name} differs from minitx")
print("matches minitx's layernorm_backward; row sums of dx (shift invariance):", dx_ln.sum(axis=-1))

# %% [markdown]
# ### A checker that never fails proves nothing
#
# The most common LayerNorm mistake is to forget that $\sigma^2$ depends on
# $x$, i.e. to drop the third term. Watch the checker catch it, and name the
# element where it is worst.

# %%
_, _, rstd_ln, xhat_ln, _, _ = cache
g_ln = G_ln * gamma
dx_wrong = rstd_ln * (g_ln - g_ln.mean(axis=-1, keepdims=True))  # (N, D): the xhat * mean(g * xhat) term is missing
bad = gradcheck(ln_loss, {"x": x_ln}, {"x": dx_wrong})
print(bad)
assert not bad.ok(1e-6)

# %% [markdown]
# ## 4. Softmax attention
#
# Forward, for one head (leading batch and head axes just come along):
#
# $$S = s\,Q K^\top \;(s = 1/\sqrt{d}), \qquad P = \mathrm{softmax}(S) \text{ (rows)}, \qquad O = P V.$$
#
# Backward, reverse the three lines. Each is either a matrix product or the
# softmax we just did. For a product $C = AB$, $C_{ij} = \sum_k A_{ik} B_{kj}$,
# so $\partial L/\partial A_{ik} = \sum_j dC_{ij} B_{kj}$, that is
#
# $$C = AB \;\Rightarrow\; dA = dC\, B^\top, \qquad dB = A^\top dC$$
#
# (and the shapes only fit one way, a handy memory aid). Applying it:
#
# $$dV = P^\top dO, \qquad dP = dO\, V^\top, \qquad
#   dS = P \odot \big(dP - \mathrm{rowsum}(dP \odot P)\big), \qquad
#   dQ = s\, dS\, K, \qquad dK = s\, dS^\top Q.$$
#
# A mask sets blocked scores to $-\infty$, so $P = 0$ there and the softmax
# step makes $dS = 0$ there too: masked pairs receive no gradient.

# %%
def my_attention_forward(q, k, v, allowed=None):
    """``q [..., Tq, d], k [..., Tk, d], v [..., Tk, dv] -> out [..., Tq, dv]``; ``allowed``: True = may attend."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    S = q @ k.swapaxes(-1, -2) * scale  # (..., Tq, d) @ (..., d, Tk) -> (..., Tq, Tk)
    if allowed is not None:
        S = np.where(allowed, S, -np.inf)  # (..., Tq, Tk)
    P = softmax(S)  # (..., Tq, Tk)
    out = P @ v  # (..., Tq, Tk) @ (..., Tk, dv) -> (..., Tq, dv)
    return out, (q, k, v, P, scale)


def my_attention_backward(dout, cache):
    """``dout [..., Tq, dv] -> (dq, dk, dv)``."""
    q, k, v, P, scale = cache
    dv = P.swapaxes(-1, -2) @ dout  # (..., Tk, Tq) @ (..., Tq, dv) -> (..., Tk, dv)
    dP = dout @ v.swapaxes(-1, -2)  # (..., Tq, dv) @ (..., dv, Tk) -> (..., Tq, Tk)
    dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))  # (..., Tq, Tk): the softmax VJP, row by row
    dq = dS @ k * scale  # (..., Tq, Tk) @ (..., Tk, d) -> (..., Tq, d)
    dk = dS.swapaxes(-1, -2) @ q * scale  # (..., Tk, Tq) @ (..., Tq, d) -> (..., Tk, d)
    return dq, dk, dv


# %% [markdown]
# Check it on a batch of 2 sequences, 2 heads, with a causal mask, the same
# four ways as LayerNorm.

# %%
B, H, T, d = (2, 2, 4, 3) if FAST else (2, 3, 6, 4)
q_at = rng.standard_normal((B, H, T, d))  # (B, H, T, d)
k_at = rng.standard_normal((B, H, T, d))  # (B, H, T, d)
v_at = rng.standard_normal((B, H, T, d))  # (B, H, T, d)
G_at = rng.standard_normal((B, H, T, d))  # (B, H, T, d): dL/dout
causal = np.tril(np.ones((T, T), dtype=bool))  # (T, T), True = may attend; broadcasts over (B, H)


def attention_loss():
    return float((my_attention_forward(q_at, k_at, v_at, causal)[0] * G_at).sum())


out_at, cache_at = my_attention_forward(q_at, k_at, v_at, causal)
dq_at, dk_at, dv_at = my_attention_backward(G_at, cache_at)
mine = {"q": dq_at, "k": dk_at, "v": dv_at}

for name, arr in (("q", q_at), ("k", k_at), ("v", v_at)):
    err = rel_error(mine[name], central_difference(attention_loss, arr))
    print(f"d{name} vs our central differences: {err:.1e}")
    assert err < 1e-6

result = gradcheck(attention_loss, {"q": q_at, "k": k_at, "v": v_at}, mine)
print(result)
assert result.ok(1e-6), result

out_lib, weights_lib, cache_lib = scaled_dot_product_attention_forward(q_at, k_at, v_at, mask=causal)
for name, a, b in zip("qkv", mine.values(), scaled_dot_product_attention_backward(G_at, cache_lib)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"d{name} differs from minitx")
np.testing.assert_allclose(out_at, out_lib, rtol=1e-12, atol=1e-14)
print("matches minitx's scaled_dot_product_attention_backward")
P_at = cache_at[3]  # (B, H, T, T)
print("largest weight on a masked (future) pair:", P_at[..., ~causal].max(), "so dS = P * (...) is 0 there too")

# %% [markdown]
# ### An identity FlashAttention relies on
#
# The softmax step needs $\mathrm{rowsum}(dP \odot P)$, and $dP = dO\,V^\top$
# is a $T \times T$ matrix. But
#
# $$\sum_j dP_{ij} P_{ij} = \sum_j \sum_c dO_{ic} V_{jc} P_{ij} = \sum_c dO_{ic} (PV)_{ic} = \sum_c dO_{ic}\, O_{ic},$$
#
# so the same vector is $D = \mathrm{rowsum}(dO \odot O)$, computed from two
# $T \times d$ arrays. FlashAttention's backward pass uses exactly this so
# that it never has to store the $T \times T$ matrices $P$ and $dP$; it
# recomputes them tile by tile instead.

# %%
dP_at = G_at @ v_at.swapaxes(-1, -2)  # (B, H, T, T)
rowsum_big = (dP_at * P_at).sum(axis=-1)  # (B, H, T): from the T x T matrices
rowsum_small = (G_at * out_at).sum(axis=-1)  # (B, H, T): from dO and O only
np.testing.assert_allclose(rowsum_big, rowsum_small, rtol=1e-10, atol=1e-12)
print("rowsum(dP * P) == rowsum(dO * O):", rowsum_small[0, 0])

# %% [markdown]
# ## 5. Choosing the step $h$, and why the checker uses float64
#
# A finite difference makes two errors that pull in opposite directions:
#
# * **truncation**: the Taylor terms we dropped, about $\frac{h^2}{6}|f'''|$,
#   shrink as $h$ shrinks;
# * **round-off**: $f(\theta \pm h)$ are each stored with a relative error of
#   about $\varepsilon$ (machine epsilon: $2.2\times10^{-16}$ in float64,
#   $1.2\times10^{-7}$ in float32). Their difference is tiny, so dividing by
#   $2h$ magnifies that noise to about $\varepsilon |f| / h$, which *grows* as
#   $h$ shrinks.
#
# The total, $\sim h^2 + \varepsilon/h$, is smallest near $h \approx
# \varepsilon^{1/3}$, where the error is about $\varepsilon^{2/3}$: roughly
# $10^{-10}$ in float64 but only $10^{-5}$ in float32. On a log-log plot that is
# a **V**. In float32 the bottom of the V is above the $10^{-6}$ tolerance
# minitx's tests demand, so no choice of $h$ could certify a gradient: the
# checker works in float64.
#
# minitx's `gradcheck` goes one step further and uses the fourth-order stencil
# $\big(f(-2h) - 8f(-h) + 8f(h) - f(2h)\big)/12h$, whose truncation error is
# $O(h^4)$; its V bottoms out near $h \approx \varepsilon^{1/5} \approx 10^{-3}$,
# its default step. We measure all three on the LayerNorm loss above, taking the
# median relative error over a few input elements.

# %%
def ln_loss_in(dtype, x_val):
    """The LayerNorm loss with every array (and so every operation) in ``dtype``."""
    y_val, _ = my_layernorm_forward(x_val, gamma.astype(dtype), beta.astype(dtype))
    return (y_val * G_ln.astype(dtype)).sum()


def finite_difference(dtype, index, h, stencil):
    """dL/dx[index] measured with the given stencil, every number held in ``dtype``."""
    def at(step):
        xs = x_ln.astype(dtype)  # a fresh copy
        xs[index] += dtype(step * h)
        return float(ln_loss_in(dtype, xs))

    if stencil == "central":
        return (at(1) - at(-1)) / (2 * h)
    return (at(-2) - 8 * at(-1) + 8 * at(1) - at(2)) / (12 * h)  # fourth order


steps = np.logspace(-12, -0.5, 24 if FAST else 48)
flat_positions = rng.choice(x_ln.size, 6, replace=False)
probe = [np.unravel_index(i, x_ln.shape) for i in flat_positions]
curves = {
    "float64, central (2nd order)": (np.float64, "central"),
    "float32, central (2nd order)": (np.float32, "central"),
    "float64, 4th order (gradcheck)": (np.float64, "fourth"),
}
errors = {}
for label, (dtype, stencil) in curves.items():
    errors[label] = np.array([
        np.median([abs(finite_difference(dtype, idx, hh, stencil) - dx_ln[idx]) / abs(dx_ln[idx]) for idx in probe])
        for hh in steps
    ])
    best = int(errors[label].argmin())
    print(f"{label:31s} best h = {steps[best]:.0e}, relative error {errors[label][best]:.1e}")

assert errors["float64, central (2nd order)"].min() < 1e-8
assert errors["float32, central (2nd order)"].min() > 1e-6  # float32 cannot reach the test tolerance
assert errors["float64, 4th order (gradcheck)"][np.abs(np.log10(steps) + 3).argmin()] < 1e-8  # good at h = 1e-3

# %%
if plt():
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(8, 5))
    styles = {"float64, central (2nd order)": "o-", "float32, central (2nd order)": "s-",
              "float64, 4th order (gradcheck)": "^-"}
    for label, err in errors.items():
        ax.loglog(steps, np.maximum(err, 1e-17), styles[label], ms=4, label=label)
    for eps, name in ((np.finfo(np.float64).eps, "float64"), (np.finfo(np.float32).eps, "float32")):
        ax.axvline(eps ** (1 / 3), color="grey", ls=":", lw=1)
        ax.text(eps ** (1 / 3), 2e-15, f" eps^(1/3)\n ({name})", fontsize=8, color="grey")
    ax.axhline(1e-6, color="red", ls="--", lw=1, label="test tolerance 1e-6")
    arrow = {"arrowstyle": "->", "color": "black", "lw": 0.8}
    ax.annotate("round-off ~ eps / h", xy=(1e-10, 2e-5), xytext=(2e-12, 1e-10), fontsize=9, arrowprops=arrow)
    ax.annotate("truncation\n~ h^2 (h^4 for 4th order)", xy=(2e-3, 1e-7), xytext=(1e-8, 1e-3), fontsize=9,
                arrowprops=arrow)
    ax.set_xlabel("step h")
    ax.set_ylabel("relative error of dL/dx (median over 6 elements)")
    ax.set_title("finite differences: the V between truncation and round-off")
    ax.set_ylim(1e-15, 10)
    ax.legend(loc="lower left", fontsize=8)
    savefig(fig, "03_step_size")

# %% [markdown]
# Read the plot from right to left. At large $h$ all curves fall as $h$
# shrinks (truncation; the fourth-order curve falls twice as steeply). Each
# then turns around and climbs at slope $-1$ (round-off). The float32 curve
# turns around early, never gets below about $10^{-5}$, and on the far left
# sits at 1: there $h$ is smaller than the spacing between float32 numbers
# near $x$, so $x + h$ rounds back to $x$, the difference is exactly 0, and
# the "derivative" is 0. This is also why section 3's plain central
# difference (at $h = 10^{-5}$) agreed to about $10^{-7}$ while `gradcheck`
# agreed to about $10^{-9}$.

# %% [markdown]
# ## Summary
#
# * Backprop = the chain rule, run backwards, one layer at a time; each
#   forward pass caches exactly what its backward pass needs.
# * Never build a Jacobian: compute the vector-Jacobian product. For softmax,
#   $dx = y \odot (dy - \langle dy, y\rangle)$.
# * LayerNorm's input gradient is $r\,(g - \text{mean}(g) - \hat x\,\text{mean}(g\hat x))$:
#   the mean and variance make every input feel every output.
# * Attention backward is two matrix-product rules around one softmax VJP.
# * Check every gradient with finite differences, in float64, with a step near
#   the bottom of the V. `minitx.gradcheck.gradcheck` does that for any
#   function, and `gradcheck_module` for any layer; the test suite runs them
#   on every layer in minitx.
