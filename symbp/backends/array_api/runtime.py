"""The array-API backend's runtime: the helpers `<name>_xp.py` calls, written against the
Python array API standard (https://data-apis.org/array-api/), as one real module that the
tests import and check directly; symbp.backends.numpy.inline copies what a module uses into it.

Every helper takes the namespace `xp` first (the caller's arrays', found once per call by
_namespace) and is functional: it returns new arrays and changes nothing it is given, has no
Python branch on an array's values and no shape that depends on them, so a module's
functions run under jax.jit. Only the standard library is imported here; array_api_compat
(PyTorch's and CuPy's namespaces) and a library's special functions are imported when such
arrays arrive. Samples are rows (row layout): each sample's units lie along axis 1.
"""

import math

# --- the namespace, dtype and device of the caller's arrays ------------------------------


def _namespace(*arrays):
    """The array namespace of the arrays: their own __array_namespace__() (NumPy 2, JAX,
    CuPy, array-api-strict), else array_api_compat's (PyTorch, older CuPy)."""
    for x in arrays:
        get = getattr(x, "__array_namespace__", None)
        if get is not None:
            return get()
    import array_api_compat

    return array_api_compat.array_namespace(*arrays)


def _as(xp, x, like):
    """x as an array of xp with like's dtype: an array of xp is cast if it must be (a
    traced array under jax.jit included); anything else (a list, another library's array)
    is copied onto like's device."""
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        try:
            same = _namespace(x) is xp
        except TypeError:  # not an array of any known namespace
            same = False
        if same:
            return x if x.dtype == like.dtype else xp.astype(x, like.dtype)
    return xp.asarray(x, dtype=like.dtype, device=like.device)


def _exp_range(xp, dtype):
    """(floor, ceil): exp of an argument between them is a normal, finite number."""
    info = xp.finfo(dtype)
    return math.log(float(info.smallest_normal)) + 1, math.log(float(info.max)) - 1


def _full(xp, value, like):
    """value (an array or a number) broadcast to like's shape."""
    if hasattr(value, "shape"):
        return xp.broadcast_to(value, like.shape)
    return xp.full_like(like, value)


def _first_max(xp, Z):
    """A boolean mask of each row's largest entry, the first one where several tie (as
    argmax picks it): no index arithmetic, so no array is made on a device."""
    hit = Z == xp.max(Z, axis=1, keepdims=True)
    return hit & (xp.cumulative_sum(xp.astype(hit, xp.int32), axis=1) == 1)


def _at(xp, mask, x):
    """Each row's entry of x where the row's one-entry mask is set, as a column."""
    return xp.sum(xp.where(mask, x, 0.0), axis=1, keepdims=True)


# --- elementwise helpers -------------------------------------------------------------------


def _exp(xp, u):
    """exp(u) with u clipped to the range where the result is a normal, finite number."""
    floor, ceil = _exp_range(xp, u.dtype)
    return xp.exp(xp.clip(u, floor, ceil))


def _expm1(xp, u):
    """exp(u) - 1, accurate near u = 0, with u clipped so that the result stays finite."""
    return xp.expm1(xp.minimum(u, _exp_range(xp, u.dtype)[1]))


def _sigmoid(xp, u):
    """1 / (1 + exp(-u)); exp(-u) is clipped below overflow, where the result is below the
    smallest normal number anyway."""
    return 1 / (1 + xp.exp(xp.minimum(-u, _exp_range(xp, u.dtype)[1])))


def _softplus(xp, u):
    """log(1 + exp(u)) = max(u, 0) + log(1 + exp(-|u|)), which cannot overflow."""
    floor = _exp_range(xp, u.dtype)[0]
    return xp.maximum(u, 0) + xp.log1p(xp.exp(xp.maximum(-xp.abs(u), floor)))


def _log_softplus(xp, u):
    """log(softplus(u)); for u < 0, u + log(log1p(t) / t) with t = exp(u), finite where
    softplus(u) rounds to 0 (t is clipped at the smallest normal number, where the ratio is 1)."""
    t = xp.exp(xp.minimum(xp.maximum(u, _exp_range(xp, u.dtype)[0]), 0))
    low = u + xp.log(xp.log1p(t) / t)
    return xp.where(u < 0, low, xp.log(_softplus(xp, xp.maximum(u, 0))))


def _heaviside(xp, u, at_zero):
    """The step function: 0 below 0, 1 above, at_zero at 0 (NaN stays NaN)."""
    step = xp.where(u > 0, 1.0, xp.where(u < 0, 0.0, xp.full_like(u, at_zero)))
    return xp.where(xp.isnan(u), u, step)


# --- softmax and the sums that leave a unit out ---------------------------------------------


def _softmax(xp, Z):
    """exp(z_k) / sum_m exp(z_m) over the units of each sample, shifted by the max."""
    floor = _exp_range(xp, Z.dtype)[0]
    E = xp.exp(xp.maximum(Z - xp.max(Z, axis=1, keepdims=True), floor))
    return E / xp.sum(E, axis=1, keepdims=True)


def _logsumexp(xp, Z):
    """log sum_k exp(z_k) over the units of each sample, shifted by the max."""
    floor = _exp_range(xp, Z.dtype)[0]
    m = xp.max(Z, axis=1, keepdims=True)
    return m + xp.log(xp.sum(xp.exp(xp.maximum(Z - m, floor)), axis=1, keepdims=True))


def _log1m_softmax(xp, Z):
    """log(1 - a_k) for a = softmax(Z): log1p(-a_k) where a_k <= 1/2, and for the largest unit
    of each sample log sum_(m != k) exp(z_m) - log sum_m exp(z_m), each shifted by its max."""
    lse = _logsumexp(xp, Z)
    a = xp.exp(xp.maximum(Z - lse, _exp_range(xp, Z.dtype)[0]))
    top = _first_max(xp, Z)
    rest = _logsumexp(xp, xp.where(top, -xp.inf, Z)) - lse
    return xp.where(top, rest, xp.log1p(-xp.minimum(a, 0.5)))


def _exclusive_parts(xp, Z):
    """What both helpers below read, per sample, with a = softmax(Z) and t the largest unit:
    t as a mask; e = exp(z - z_t) (so e_t = 1); d_k = sum_(m != k) e_m, >= 1 for k != t (1
    at t, unused); q_i = a_i / (1 - a_t) for i != t, from the logits of the units other than
    t (0 at t). Only t can have 1 - a_t round to 0; every other k has 1 - a_k >= 1/2."""
    floor = _exp_range(xp, Z.dtype)[0]
    top = _first_max(xp, Z)
    e = xp.exp(xp.maximum(Z - xp.max(Z, axis=1, keepdims=True), floor))
    d = xp.where(top, 1.0, xp.sum(e, axis=1, keepdims=True) - e)
    others = _logsumexp(xp, xp.where(top, -xp.inf, Z))
    q_top = xp.where(top, 0.0, xp.exp(xp.maximum(xp.minimum(Z - others, 0), floor)))
    return top, e, d, q_top


def _exclusive_softmax(xp, g, Z, over):
    """With a = softmax(Z) per sample and q_ik = a_i / (1 - a_k), the softmax of the units
    other than k at i: over=True gives sum_(k != j) g_k q_jk at each unit j, over=False
    sum_(i != k) g_i q_ik at each unit k. O(units) per sample."""
    g = _full(xp, g, Z)
    top, e, d, q_top = _exclusive_parts(xp, Z)
    if over:
        w = xp.where(top, 0.0, g / d)
        s = xp.sum(w, axis=1, keepdims=True)
        return xp.where(top, s, e * (s - w) + _at(xp, top, g) * q_top)
    ge = g * e
    out = (xp.sum(ge, axis=1, keepdims=True) - ge) / d
    return xp.where(top, xp.sum(g * q_top, axis=1, keepdims=True), out)


def _exclusive_softmax_tangent(xp, g, v, Z):
    """The derivative of _exclusive_softmax(g, Z, over=True) along Z' = v: at each unit j,
    sum_(k != j) g_k q_jk (v_j - u_k) with u_k = sum_(i != k) q_ik v_i, the differences that
    cancel formed as sums of small terms (see the NumPy runtime's twin). O(units) per sample."""
    g, v = _full(xp, g, Z), _full(xp, v, Z)
    top, e, d, q_top = _exclusive_parts(xp, Z)
    ev = e * v
    u_top = xp.sum(q_top * v, axis=1, keepdims=True)
    u = xp.where(top, u_top, (xp.sum(ev, axis=1, keepdims=True) - ev) / d)
    w = xp.where(top, 0.0, g / d)
    s1, s2 = xp.sum(w, axis=1, keepdims=True), xp.sum(w * u, axis=1, keepdims=True)
    # v_j - u_t; at the largest of the other units r, where q_rt is near 1, as the sum
    # sum_(i != t) q_it (v_r - v_i) of small terms.
    r = _first_max(xp, q_top)
    near = xp.sum(q_top * (_at(xp, r, v) - v), axis=1, keepdims=True)
    from_top = xp.where(r, near, v - u_top)
    out = e * (v * (s1 - w) - (s2 - w * u)) + _at(xp, top, g) * q_top * from_top
    spread = xp.where(top, 0.0, e * (_at(xp, top, v) - v))
    p = xp.sum(spread, axis=1, keepdims=True)
    return xp.where(top, xp.sum(w * (p - spread) / d, axis=1, keepdims=True), out)


# --- erf ----------------------------------------------------------------------------------
# The library's own erf where it has one; else W. J. Cody's rational approximations (float64)
# or one rational function (narrower floats), evaluated without branches: every range on
# clipped arguments, the right one then selected.
from symbp.backends.erf_tables import (  # noqa: E402
    _ERF_A,
    _ERF_B,
    _ERF_C,
    _ERF_D,
    _ERF_P,
    _ERF_Q,
    _ERF_SP,
    _ERF_SQ,
)


def _erf_ratio(s, c, d):
    """N(s) / D(s) with N(s) = c[-1] s^n + c[0] s^(n-1) + ... + c[-2] and the monic
    D(s) = s^n + d[0] s^(n-1) + ... + d[-1], by Horner's rule."""
    num, den = s * c[-1] + c[0], s + d[0]
    for a, b in zip(c[1:-1], d[1:], strict=False):
        num, den = num * s + a, den * s + b
    return num / den


def _erf_portable(xp, u):
    """erf(u) from the standard's functions alone."""
    if xp.finfo(u.dtype).bits < 64:
        v = xp.clip(u, -4.0, 4.0)
        s = v * v
        num, den = s * _ERF_SP[-1], s * _ERF_SQ[-1]
        for c in _ERF_SP[-2:0:-1]:
            num = (num + c) * s
        for c in _ERF_SQ[-2:0:-1]:
            den = (den + c) * s
        return v * (num + _ERF_SP[0]) / (den + _ERF_SQ[0])
    ax = xp.abs(u)
    near_a = tuple(a - b for a, b in zip(_ERF_A, (*_ERF_B, 1.0), strict=True))  # N_A - D_B
    x = xp.where(ax < 0.5, u, 0.0)
    near = x + x * _erf_ratio(x * x, near_a, _ERF_B)
    v = xp.clip(ax, 0.5, 4.0)
    mid = 1.0 - xp.exp(-v * v) * _erf_ratio(v, _ERF_C, _ERF_D)
    v = xp.clip(ax, 4.0, 6.0)  # from 6 on erf(x) rounds to 1
    z = 1 / (v * v)
    tail = 1.0 - xp.exp(-v * v) * (0.56418958354775628695 - z * _erf_ratio(z, _ERF_P, _ERF_Q)) / v
    far = xp.copysign(xp.where(ax < 4.0, mid, tail), u)
    return xp.where((ax < 0.5) | xp.isnan(u), near, far)


def _erf(xp, u):
    """erf(u): torch.special.erf, jax.scipy.special.erf or cupyx.scipy.special.erf on those
    libraries' arrays, else _erf_portable."""
    try:
        import array_api_compat as compat
    except ImportError:  # NumPy or array-api-strict arrays without array_api_compat
        return _erf_portable(xp, u)
    if compat.is_torch_namespace(xp):
        import torch

        return torch.special.erf(u)
    if compat.is_jax_namespace(xp):
        import jax.scipy.special

        return jax.scipy.special.erf(u)
    if compat.is_cupy_namespace(xp):
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(u)
    return _erf_portable(xp, u)


# --- images --------------------------------------------------------------------------------
# Images are stored one sample per row, each as its C*H*W entries in C order (NCHW, as
# PyTorch); the helpers view them as (n, C, H, W). g is a layer's geometry:
# (C, H, W, F, Ho, Wo, kh, kw, sh, sw, ph, pw) for input (C, H, W), output (F, Ho, Wo).
# Convolutions run on the library's own kernels where it has them (PyTorch's conv2d and its
# input and weight gradients, jax.lax.conv_general_dilated); everywhere else, and for
# pooling (whose first-maximum rule a library's kernel may not share), slices of the
# padded image, one per window position, and new arrays built from them.


def _library(xp):
    """ "torch", "jax" or "" for the namespace: which native kernels it has."""
    try:
        import array_api_compat as compat
    except ImportError:
        return ""
    if compat.is_torch_namespace(xp):
        return "torch"
    if compat.is_jax_namespace(xp):
        return "jax"
    return ""


def _image(xp, A, g):
    return xp.reshape(A, (A.shape[0], g[0], g[1], g[2]))


def _rows(xp, X):
    """(n, ...) as one row of entries per sample."""
    return xp.reshape(X, (X.shape[0], -1))


def _zeros(xp, like, shape):
    """Zeros of `shape` with like's dtype, on like's device (made from like, not from a
    device name, so that a traced array needs none)."""
    return xp.broadcast_to(xp.zeros_like(like[(slice(0, 1),) * like.ndim]), shape)


def _pad(xp, X, axis, before, after):
    """X with `before` and `after` zero entries added along an axis."""
    if not (before or after):
        return X
    parts = []
    for size in (before, after):
        shape = list(X.shape)
        shape[axis] = size
        parts.append(_zeros(xp, X, tuple(shape)) if size else None)
    return xp.concat([p for p in (parts[0], X, parts[1]) if p is not None], axis=axis)


def _padded(xp, X, g):
    """X (n, C, H, W) with ph, pw rows and columns of zeros on each side."""
    return _pad(xp, _pad(xp, X, 2, g[10], g[10]), 3, g[11], g[11])


def _offsets(g):
    """Each window position (p, q), row by row, with the slices of the padded input it
    reads across all windows at once: rows p, p + sh, ..., columns q, q + sw, ..."""
    Ho, Wo, kh, kw, sh, sw = g[4], g[5], g[6], g[7], g[8], g[9]
    for p in range(kh):
        for q in range(kw):
            rows = slice(p, p + (Ho - 1) * sh + 1, sh)
            yield p, q, (slice(None), slice(None), rows, slice(q, q + (Wo - 1) * sw + 1, sw))


def _dilated(xp, X, axis, stride):
    """X with stride - 1 zeros between consecutive entries along an axis."""
    if stride == 1:
        return X
    gaps = [X] + [xp.zeros_like(X)] * (stride - 1)
    joined = xp.stack(gaps, axis=axis + 1)
    shape = list(X.shape)
    shape[axis] *= stride
    return xp.reshape(joined, tuple(shape))[
        (slice(None),) * axis + (slice(0, shape[axis] - stride + 1), ...)
    ]


def _placed(xp, part, g, p, q):
    """part (n, C, Ho, Wo) at rows p + i sh, columns q + j sw of zeros shaped like the
    padded input (n, C, H + 2 ph, W + 2 pw): the transpose of reading one window position."""
    Hp, Wp = g[1] + 2 * g[10], g[2] + 2 * g[11]
    rows = _dilated(xp, part, 2, g[8])
    rows = _pad(xp, rows, 2, p, Hp - p - rows.shape[2])
    both = _dilated(xp, rows, 3, g[9])
    return _pad(xp, both, 3, q, Wp - q - both.shape[3])


def _cropped(xp, full, g):
    """The padded image (n, C, H', W') without its padding, as rows."""
    ph, pw = g[10], g[11]
    return _rows(xp, full[:, :, ph : ph + g[1], pw : pw + g[2]])


def _unfold(xp, A, g):
    """The zero-padded input unfolded: (n, C kh kw Ho Wo), each sample's (C kh kw, Ho Wo)
    matrix in C order, whose column (i, j) holds the entries window (i, j) reads."""
    X = _padded(xp, _image(xp, A, g), g)
    return _rows(xp, xp.stack([X[index] for _, _, index in _offsets(g)], axis=2))


def _conv2d_columns(xp, cols, W, b, g):
    """z = b + W times the unfolded input: one product per sample of the filters
    (F, C kh kw) with the sample's (C kh kw, Ho Wo) columns."""
    n, F, HoWo = cols.shape[0], g[3], g[4] * g[5]
    Z = xp.reshape(W, (F, -1)) @ xp.reshape(cols, (n, -1, HoWo))
    if b is not None:
        Z = Z + xp.reshape(b, (F, 1))
    return xp.reshape(Z, (n, F * HoWo))


def _conv2d_back_kernel_columns(xp, cols, D, g):
    """dL/dW: delta times the unfolded input transposed, summed over the batch."""
    n, F, HoWo = cols.shape[0], g[3], g[4] * g[5]
    per_sample = xp.reshape(D, (n, F, HoWo)) @ xp.matrix_transpose(xp.reshape(cols, (n, -1, HoWo)))
    return xp.reshape(xp.sum(per_sample, axis=0), (F, g[0], g[6], g[7]))


def _kept(xp, A, g):
    """What the forward pass keeps of a convolution's input for the kernel's gradient: the
    image itself where the library has its own convolution kernels (PyTorch, JAX), else
    the unfolded input that the product and the kernel's gradient share."""
    return A if _library(xp) else _unfold(xp, A, g)


def _conv2d_kept(xp, K, W, b, g):
    """z = b + W correlated with the input, from what _kept kept."""
    return _conv2d(xp, K, W, b, g) if _library(xp) else _conv2d_columns(xp, K, W, b, g)


def _conv2d_back_kernel_kept(xp, K, D, g):
    """dL/dW from what _kept kept and delta."""
    if _library(xp):
        return _conv2d_back_kernel(xp, K, D, g)
    return _conv2d_back_kernel_columns(xp, K, D, g)


def _where_positive(xp, x, u):
    """x where u > 0, else 0: x times the 0/1 mask of u > 0 (a ReLU's derivative). On
    PyTorch one kernel (the one its own ReLU backward runs) instead of a comparison, a cast
    and a product, each writing a new array."""
    if x.shape == u.shape and x.dtype == u.dtype and _library(xp) == "torch":
        import torch

        return torch.ops.aten.threshold_backward(x, u, 0)
    return x * xp.astype(u > 0, x.dtype)


def _conv2d(xp, A, W, b, g):
    """z = b + W correlated with the zero-padded image A."""
    library = _library(xp)
    if library == "torch":
        import torch

        Z = torch.nn.functional.conv2d(_image(xp, A, g), W, b, (g[8], g[9]), (g[10], g[11]))
        return _rows(xp, Z)
    if library == "jax":
        import jax

        Z = jax.lax.conv_general_dilated(
            _image(xp, A, g), W, (g[8], g[9]), [(g[10], g[10]), (g[11], g[11])],
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )  # fmt: skip
        return _rows(xp, Z if b is None else Z + xp.reshape(b, (g[3], 1, 1)))
    return _conv2d_columns(xp, _unfold(xp, A, g), W, b, g)


def _conv2d_back_kernel(xp, A, D, g):
    """dL/dW: the padded input correlated with delta, summed over the batch."""
    F, Ho, Wo = g[3], g[4], g[5]
    library = _library(xp)
    if library == "torch":
        import torch

        D4 = xp.reshape(D, (D.shape[0], F, Ho, Wo))
        shape = (F, g[0], g[6], g[7])
        return torch.nn.grad.conv2d_weight(
            _image(xp, A, g), shape, D4, (g[8], g[9]), (g[10], g[11])
        )
    if library == "jax":
        import jax

        # the batch is the contraction: images as (C, n, H, W), delta as the kernel (F, n, Ho,
        # Wo) dilated by the stride; the result's first kh x kw positions are dW (C, F, kh, kw)
        D4 = xp.reshape(D, (D.shape[0], F, Ho, Wo))
        X = xp.permute_dims(_padded(xp, _image(xp, A, g), g), (1, 0, 2, 3))
        K = xp.permute_dims(D4, (1, 0, 2, 3))
        out = jax.lax.conv_general_dilated(
            X, K, (1, 1), [(0, 0), (0, 0)], rhs_dilation=(g[8], g[9]),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )  # fmt: skip
        return xp.permute_dims(out[:, :, : g[6], : g[7]], (1, 0, 2, 3))
    return _conv2d_back_kernel_columns(xp, _unfold(xp, A, g), D, g)


def _conv2d_back_input(xp, D, W, g):
    """dL/da: delta fully correlated with the flipped kernel: W^T delta per position,
    added back where each window read its input."""
    C, F, Ho, Wo, kh, kw = g[0], g[3], g[4], g[5], g[6], g[7]
    n = D.shape[0]
    D4 = xp.reshape(D, (n, F, Ho, Wo))
    library = _library(xp)
    if library == "torch":
        import torch

        shape = (n, C, g[1], g[2])
        return _rows(xp, torch.nn.grad.conv2d_input(shape, W, D4, (g[8], g[9]), (g[10], g[11])))
    if library == "jax":
        import jax

        # delta dilated by the stride, correlated with the kernel flipped and transposed
        # (C, F, kh, kw); rows the forward pass never read (past the last window) get zeros
        extra_h = (g[1] + 2 * g[10] - kh) % g[8]
        extra_w = (g[2] + 2 * g[11] - kw) % g[9]
        K = xp.permute_dims(xp.flip(W, axis=(2, 3)), (1, 0, 2, 3))
        full = jax.lax.conv_general_dilated(
            D4, K, (1, 1), [(kh - 1, kh - 1 + extra_h), (kw - 1, kw - 1 + extra_w)],
            lhs_dilation=(g[8], g[9]), dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )  # fmt: skip
        return _cropped(xp, full, g)
    by_position = xp.permute_dims(xp.reshape(W, (F, C * kh * kw)), (1, 0))
    parts = xp.reshape(by_position @ xp.reshape(D4, (n, F, Ho * Wo)), (n, C, kh, kw, Ho, Wo))
    full = sum(_placed(xp, parts[:, :, p, q, ...], g, p, q) for p, q, _ in _offsets(g))
    return _cropped(xp, full, g)


def _tiled(g):
    """Whether the windows tile the image: stride = window, no padding (pooling's usual
    case), so each entry is read by at most one window and reshapes replace the loops."""
    return g[8] == g[6] and g[9] == g[7] and g[10] == 0 and g[11] == 0


def _tiles(xp, A, g):
    """The image's windows (n, C, Ho, kh, Wo, kw), for tiled windows (rows and columns past
    the last window left out)."""
    X = _image(xp, A, g)[:, :, : g[4] * g[6], : g[5] * g[7]]
    return xp.reshape(X, (A.shape[0], g[0], g[4], g[6], g[5], g[7]))


def _untiled(xp, T, g):
    """(n, C, Ho, kh, Wo, kw) back as image rows, zeros where no window reads."""
    n, C, Ho, kh, Wo, kw = T.shape
    X = xp.reshape(T, (n, C, Ho * kh, Wo * kw))
    X = _pad(xp, _pad(xp, X, 2, 0, g[1] - Ho * kh), 3, 0, g[2] - Wo * kw)
    return _rows(xp, X)


def _tile_hits(xp, A, M, g):
    """For tiled windows: (n, C, Ho, Wo, kh kw), true at each window's first maximum
    (positions row by row, as _offsets orders them), M being the maxima."""
    T = xp.permute_dims(_tiles(xp, A, g), (0, 1, 2, 4, 3, 5))
    T = xp.reshape(T, (A.shape[0], g[0], g[4], g[5], g[6] * g[7]))
    hit = T == xp.reshape(M, (A.shape[0], g[0], g[4], g[5], 1))
    return hit & (xp.cumulative_sum(xp.astype(hit, xp.int32), axis=4) == 1)


def _from_hits(xp, V, g):
    """(n, C, Ho, Wo, kh kw) as image rows: each window's values where it reads."""
    V = xp.reshape(V, (V.shape[0], g[0], g[4], g[5], g[6], g[7]))
    return _untiled(xp, xp.permute_dims(V, (0, 1, 2, 4, 3, 5)), g)


def _maxpool(xp, A, g):
    """The maximum of each window: an elementwise maximum over the kh kw positions."""
    if _tiled(g):
        return _rows(xp, xp.max(_tiles(xp, A, g), axis=(3, 5)))
    X = _image(xp, A, g)
    best = None
    for _, _, index in _offsets(g):
        best = X[index] if best is None else xp.maximum(best, X[index])
    return _rows(xp, best)


def _maxpool_hits(xp, A, M, g):
    """For each window position: its index and where the window's first maximum is there,
    M being the maxima the forward pass took."""
    X = _image(xp, A, g)
    best = xp.reshape(M, (A.shape[0], g[0], g[4], g[5]))
    taken = None
    for p, q, index in _offsets(g):
        hit = X[index] == best
        if taken is not None:
            hit = hit & ~taken
        taken = hit if taken is None else taken | hit
        yield p, q, index, hit


def _maxpool_route(xp, A, M, D, g):
    """Each entry of D sent to the first maximum of its window of A."""
    D4 = xp.reshape(D, (D.shape[0], g[0], g[4], g[5]))
    if _tiled(g):
        # times the 0/1 hits rather than where(): where() is several times slower on the
        # CPU in NumPy and PyTorch
        hits = xp.astype(_tile_hits(xp, A, M, g), D.dtype)
        return _from_hits(xp, xp.reshape(D4, (*D4.shape, 1)) * hits, g)
    full = sum(
        _placed(xp, xp.where(hit, D4, 0.0), g, p, q) for p, q, _, hit in _maxpool_hits(xp, A, M, g)
    )
    return _cropped(xp, full, g)


def _maxpool_pick(xp, A, M, D, g):
    """The entry of D at the first maximum of each window of A."""
    if _tiled(g):
        T = xp.permute_dims(_tiles(xp, D, g), (0, 1, 2, 4, 3, 5))
        T = xp.reshape(T, (D.shape[0], g[0], g[4], g[5], g[6] * g[7]))
        return _rows(xp, xp.sum(T * xp.astype(_tile_hits(xp, A, M, g), T.dtype), axis=4))
    Dimg = _image(xp, D, g)
    return _rows(
        xp, sum(xp.where(hit, Dimg[index], 0.0) for _, _, index, hit in _maxpool_hits(xp, A, M, g))
    )


def _avgpool(xp, A, g):
    """The mean of each window: the sum over the kh kw positions, divided."""
    if _tiled(g):
        return _rows(xp, xp.sum(_tiles(xp, A, g), axis=(3, 5)) / (g[6] * g[7]))
    X = _image(xp, A, g)
    return _rows(xp, sum(X[index] for _, _, index in _offsets(g)) / (g[6] * g[7]))


def _avgpool_back(xp, D, g):
    """Each entry of D spread over its window, 1/(kh kw) to each entry."""
    share = xp.reshape(D, (D.shape[0], g[0], g[4], g[5])) / (g[6] * g[7])
    if _tiled(g):
        spread = xp.reshape(share, (D.shape[0], g[0], g[4], 1, g[5], 1))
        return _untiled(xp, xp.broadcast_to(spread, (*spread.shape[:3], g[6], g[5], g[7])), g)
    return _cropped(xp, sum(_placed(xp, share, g, p, q) for p, q, _ in _offsets(g)), g)


def _per_channel(xp, v, g):
    """A per-channel vector (C,) repeated over each channel's H*W positions."""
    return xp.reshape(xp.broadcast_to(xp.reshape(v, (g[0], 1)), (g[0], g[1])), (-1,))


def _channel_total(xp, X, g):
    """The sum over the batch and the positions of each channel: (C,)."""
    return xp.sum(xp.reshape(X, (-1, g[0], g[1])), axis=(0, 2))


def _channel_batch_sum(xp, X, g):
    """The sum over the batch and the positions of each channel, repeated over them."""
    return _per_channel(xp, _channel_total(xp, X, g), g)


# --- per-sample tensors (symbp.ir.tensor_ops) ----------------------------------------------
# Each sample is stored as the prod(shape) entries of its tensor in C order, one row each.


def _axis_sum(xp, x, shape, axes):
    """The sum of each sample over its axes `axes`, broadcast back to the sample's shape."""
    t = xp.reshape(x, (-1, *shape))
    total = xp.sum(t, axis=tuple(a + 1 for a in axes), keepdims=True)
    return xp.reshape(xp.broadcast_to(total, t.shape), (t.shape[0], -1))


def _permute(xp, x, shape, order):
    """Each sample's axes in `order`."""
    t = xp.permute_dims(xp.reshape(x, (-1, *shape)), (0, *(a + 1 for a in order)))
    return xp.reshape(t, (t.shape[0], -1))


def _slice(xp, x, shape, axis, start, stop):
    """Entries start..stop-1 along one axis of each sample."""
    t = xp.reshape(x, (-1, *shape))
    index = (slice(None),) * (axis + 1) + (slice(start, stop), ...)
    return xp.reshape(t[index], (t.shape[0], -1))


def _embed(xp, x, shape, axis, start, stop, full):
    """Each sample of `shape` placed at start..stop-1 along an axis of a zero tensor of
    shape `full` (the adjoint of _slice): the zeros are made like x, on its device."""
    t = xp.reshape(x, (-1, *shape))
    zero = xp.zeros_like(xp.sum(t, axis=axis + 1, keepdims=True))
    parts = []
    for size in (start, full[axis] - stop):
        pad = list(t.shape)
        pad[axis + 1] = size
        parts.append(xp.broadcast_to(zero, tuple(pad)) if size else None)
    pieces = [p for p in (parts[0], t, parts[1]) if p is not None]
    joined = xp.concat(pieces, axis=axis + 1) if len(pieces) > 1 else t
    return xp.reshape(joined, (t.shape[0], -1))


def _step(xp, x, shape, axis, index):
    """Entry `index` along one axis of each sample (that axis dropped): step t of a sequence."""
    t = xp.reshape(x, (-1, *shape))
    return xp.reshape(t[(slice(None),) * (axis + 1) + (index, ...)], (t.shape[0], -1))


# --- training -------------------------------------------------------------------------------
# PyTorch's optimizers (torch.optim.SGD without dampening or Nesterov, Adam and AdamW with
# bias correction), functional and jit-friendly: the state's structure is fixed by the
# optimizer's name, its step count is a 0-d array, and no branch reads an array's value.
OPTIMIZERS = ("sgd", "adam", "adamw")


# Recurrent layers. g = (T, h, blocks, carries, last, summed, G, cell), as the NumPy
# runtime's; the step functions are the module's own, printed from SymPy. On JAX the loops
# are jax.lax.scan (one traced step, so compiling does not grow with T); elsewhere Python
# loops whose steps are stacked at the end.
def _scan(xp, body, carry, xs, reverse=False):
    """carry, ys: body(carry, x) -> (carry, y) over the leading axis of each array of the
    tuple xs (None entries passed as None), the ys stacked along a new leading axis."""
    if _library(xp) == "jax":
        import jax

        return jax.lax.scan(body, carry, xs, reverse=reverse)
    T = next(x.shape[0] for x in xs if x is not None)
    ys = [None] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        carry, ys[t] = body(carry, tuple(None if x is None else x[t, ...] for x in xs))
    if isinstance(ys[0], tuple):
        return carry, tuple(xp.stack([y[k] for y in ys], axis=0) for k in range(len(ys[0])))
    return carry, xp.stack(ys, axis=0)


def _time_major(xp, X, T):
    """(n*T, w) rows, sample after sample, as (T, n, w)."""
    return xp.permute_dims(xp.reshape(X, (-1, T, X.shape[1])), (1, 0, 2))


def _sample_major(xp, X):
    """(T, n, w) back as the (n*T, w) rows."""
    return xp.reshape(xp.permute_dims(X, (1, 0, 2)), (-1, X.shape[2]))


def _recurrent_forward(xp, step, U, Whh, bhh, g):
    """The forward loop: each step's v = h_(t-1) Whh^T + bhh, then the cell's step on u_t,
    v and the carries of the step before (zero before the first); every step's kept row."""
    T, h, carries = g[0], g[1], g[3] * g[1]

    def body(prev, x):
        v = prev[:, :h] @ xp.matrix_transpose(Whh)
        if bhh is not None:
            v = v + bhh
        row = step(xp, x[0], v, prev)
        return row[:, :carries], row

    start = _zeros(xp, U, (U.shape[0] // T, carries))
    return _sample_major(xp, _scan(xp, body, start, (_time_major(xp, U, T),))[1])


def _recurrent_output(xp, S, g):
    """Each step's h (the first block of its kept row), or the last step's only."""
    T, h = g[0], g[1]
    rows = xp.reshape(S, (-1, T, S.shape[1]))
    return rows[:, T - 1, :h] if g[4] else xp.reshape(rows[:, :, :h], (-1, h))


def _previous_outputs(xp, S, g):
    """h_(t-1) for each row: the step before's h, zero for the first step."""
    return _shifted(xp, S, g, g[1])


def _incoming_rows(xp, D, g):
    """dL/dh_t from the layers above, (T, n, h): D's rows, or D at the last step only
    (zero before it) when the layer returns h_T; None for no D."""
    if D is None:
        return None
    if not g[4]:
        return _time_major(xp, D, g[0])
    before = _zeros(xp, D, (g[0] - 1, D.shape[0], D.shape[1]))
    return xp.concat((before, D[None, ...]), axis=0)


def _recurrent_backward(xp, back, S, Whh, D, g):
    """Backpropagation through time: for t = T..1, the carries' incoming errors (the
    layers' above, plus dv W_hh from the step after) through the cell's backward step;
    every step's dL/du (and dL/dv beside it unless summed)."""
    T, h, carries = g[0], g[1], g[3] * g[1]
    kept = _time_major(xp, S, T)
    previous = _time_major(xp, _shifted_carries(xp, S, g), T)

    def body(after, x):
        row, prev, above = x
        incoming = (
            after if above is None else xp.concat((after[:, :h] + above, after[:, h:]), axis=1)
        )
        du, dv, before = back(xp, row, prev, incoming)
        out = du if g[5] else xp.concat((du, dv), axis=1)
        sent = dv @ Whh
        return xp.concat((before[:, :h] + sent, before[:, h:]), axis=1), out

    above = _incoming_rows(xp, D, g)
    start = _zeros(xp, S, (S.shape[0] // T, carries))
    return _sample_major(xp, _scan(xp, body, start, (kept, previous, above), reverse=True)[1])


def _shifted_carries(xp, S, g):
    """The carries of the step before for each row (zero for the first step)."""
    return _shifted(xp, S, g, g[3] * g[1])


def _shifted(xp, S, g, width):
    """The first `width` entries of the step before's kept row, for each row (zero for the
    first step)."""
    T = g[0]
    rows = xp.reshape(S, (-1, T, S.shape[1]))[:, :, :width]
    first = _zeros(xp, S, (rows.shape[0], 1, width))
    return xp.reshape(xp.concat((first, rows[:, : T - 1, :]), axis=1), (-1, width))


def _gate_errors(xp, E, g):
    """dL/du: the first G h entries of each row of the gates' errors."""
    return E[:, : g[6] * g[1]]


def _hidden_gate_errors(xp, E, g):
    """dL/dv: the second G h entries of each row, or the first when the cell reads u + v."""
    G = g[6] * g[1]
    return E[:, :G] if g[5] else E[:, G:]


def _recurrent_tangent(xp, step, S, Ud, Whh, Whhd, bhhd, g):
    """The tangents' forward loop: v' = h'_(t-1) Whh^T + h_(t-1) Whh'^T + bhh', then the
    cell's tangent step; the tangent of every kept row."""
    T, h, carries = g[0], g[1], g[3] * g[1]

    def body(prev_d, x):
        row, prev, ud = x
        vd = prev_d[:, :h] @ xp.matrix_transpose(Whh)
        if Whhd is not None:
            vd = vd + prev[:, :h] @ xp.matrix_transpose(Whhd)
        if bhhd is not None:
            vd = vd + bhhd
        moved = step(xp, row, prev, ud, vd, prev_d)
        return moved[:, :carries], moved

    xs = (_time_major(xp, S, T), _time_major(xp, _shifted_carries(xp, S, g), T),
          _time_major(xp, Ud, T))  # fmt: skip
    start = _zeros(xp, S, (S.shape[0] // T, carries))
    return _sample_major(xp, _scan(xp, body, start, xs)[1])


def _recurrent_r_backward(xp, step, S, Sd, Whh, Whhd, D, RD, g):
    """The R-operator of backpropagation through time: the backward loop with, beside each
    carry's error, its R (R{dv} W_hh + dv W_hh' to the step before); every step's
    R{dL/du} (and R{dL/dv})."""
    T, h, carries = g[0], g[1], g[3] * g[1]

    def add(after, above):
        return after if above is None else xp.concat((after[:, :h] + above, after[:, h:]), axis=1)

    def body(state, x):
        after, r_after = state
        row, prev, row_d, prev_d, above, r_above = x
        incoming, r_incoming = add(after, above), add(r_after, r_above)
        dv, before, rdu, rdv, r_before = step(xp, row, prev, row_d, prev_d, incoming, r_incoming)
        out = rdu if g[5] else xp.concat((rdu, rdv), axis=1)
        sent = dv @ Whh
        r_sent = rdv @ Whh if Whhd is None else rdv @ Whh + dv @ Whhd
        before = xp.concat((before[:, :h] + sent, before[:, h:]), axis=1)
        r_before = xp.concat((r_before[:, :h] + r_sent, r_before[:, h:]), axis=1)
        return (before, r_before), out

    xs = (
        _time_major(xp, S, T),
        _time_major(xp, _shifted_carries(xp, S, g), T),
        _time_major(xp, Sd, T),
        _time_major(xp, _shifted_carries(xp, Sd, g), T),
        _incoming_rows(xp, D, g),
        _incoming_rows(xp, RD, g),
    )
    zero = _zeros(xp, S, (S.shape[0] // T, carries))
    return _sample_major(xp, _scan(xp, body, (zero, zero), xs, reverse=True)[1])


# what the module template's step and train call (every module has them)
TEMPLATE_CALLS = (
    "_namespace",
    "_as",
    "_batches",
    "_take",
    "_clipped",
    "_optimizer_state",
    "_optimizer_update",
)


# A sequence network (input (T, d)) computes on the n*T rows of its samples' positions:
# its inputs and targets come in as (n, T, ...) and its outputs go back out that way.
def _sequence_rows(xp, X, shape):
    """A batch of sequences (n, *shape) as the rows of its positions, (n*T, d)."""
    if tuple(X.shape[1:]) != tuple(shape):
        raise ValueError(
            f"expected an array of shape (n, {', '.join(map(str, shape))}), got {tuple(X.shape)}"
        )
    return xp.reshape(X, (-1, shape[-1]))


def _sequence_targets(xp, Y, shape, ids):
    """Targets (n, T, k) as the rows of their positions, (n*T, k); with `ids` (cross-entropy),
    also class ids (n, T) read as one-hot rows (ids outside [0, k) give a zero row: their
    values are not inspected, so that jax.jit can trace this)."""
    if ids and tuple(Y.shape[1:]) == tuple(shape[:-1]):
        # a traced JAX array has no device: the library then places the classes itself
        classes = xp.arange(shape[-1], dtype=Y.dtype, device=getattr(Y, "device", None))
        return xp.astype(xp.reshape(Y, (-1, 1)) == classes, Y.dtype)
    return _sequence_rows(xp, Y, shape)


def _sequences(xp, A, shape):
    """The rows of the positions (n*T, k) back as sequences (n, T, k)."""
    return xp.reshape(A, (-1, *shape))


def _token_ids(xp, X, like, shape):
    """Token ids (n, T) as the n*T integer ids of the positions, on like's device (their
    values are not inspected, so that jax.jit can trace this)."""
    if not (hasattr(X, "dtype") and hasattr(X, "shape")):
        X = xp.asarray(X, device=like.device)
    if tuple(X.shape[1:]) != tuple(shape):
        raise ValueError(f"expected token ids of shape (n, {shape[0]}), got {tuple(X.shape)}")
    if not xp.isdtype(X.dtype, "integral"):
        raise ValueError(f"token ids must be integers, got dtype {X.dtype}")
    return xp.reshape(X, (-1,))


# The token embedding. g = (V, dim, T): the vocabulary, the width, the positions.
def _lookup(xp, E, ids, g):
    """Row ids[r] of the table E for each position r."""
    return xp.take(E, ids, axis=0)


def _tile_positions(xp, P, ids, g):
    """Row t of P for each position r = s T + t: the same rows for every sample."""
    return xp.reshape(xp.broadcast_to(P, (ids.shape[0] // g[2], *P.shape)), (-1, P.shape[1]))


def _sinusoid_rows(xp, like, ids, g):
    """Vaswani et al.'s positions, computed in float64 with the standard library's math,
    then made an array of like's dtype and device, for each position r = s T + t."""
    import math

    table = [
        [(math.sin if i % 2 == 0 else math.cos)(t / 10000.0 ** (2 * (i // 2) / g[1]))
         for i in range(g[1])]
        for t in range(g[2])
    ]  # fmt: skip
    P = xp.asarray(table, dtype=like.dtype, device=like.device)
    return _tile_positions(xp, P, ids, g)


def _scatter_rows(xp, D, ids, g):
    """Row v: the sum of the rows of D at the positions whose token is v (an exact
    scatter-add, duplicates adding up), as the one-hot rows' transpose times D."""
    classes = xp.arange(g[0], dtype=ids.dtype, device=getattr(ids, "device", None))
    onehot = xp.astype(xp.reshape(classes, (-1, 1)) == xp.reshape(ids, (1, -1)), D.dtype)
    return onehot @ D


def _position_total(xp, D, g):
    """Row t: the sum over the samples of D's row at position t."""
    return xp.sum(xp.reshape(D, (-1, g[2], g[1])), axis=0)


# flatten on a sequence. g = (T, d).
def _fold_positions(xp, A, g):
    """The n*T rows of d as n rows of T*d: sample s's positions side by side."""
    return xp.reshape(A, (-1, g[0] * g[1]))


def _unfold_positions(xp, D, g):
    """The n rows of T*d back as the n*T rows of d of the positions."""
    return xp.reshape(D, (-1, g[1]))


# Multi-head attention. g = (T, d, heads, causal). (n*T, d) arrays hold head h in columns
# h d_h .. (h+1) d_h - 1; score arrays hold (n, heads, T, T) in that order.
def _heads(xp, x, g):
    """(n*T, d) rows as (n, heads, T, d_h)."""
    T, d, h = g[0], g[1], g[2]
    return xp.permute_dims(xp.reshape(x, (-1, T, h, d // h)), (0, 2, 1, 3))


def _merged(xp, t, g):
    """(n, heads, T, d_h) back as (n*T, d): the heads side by side."""
    return xp.reshape(xp.permute_dims(t, (0, 2, 1, 3)), (-1, g[1]))


def _grid(xp, x, g):
    """A score array as (n, heads, T, T)."""
    return xp.reshape(x, (-1, g[2], g[0], g[0]))


def _swap(xp, t):
    return xp.permute_dims(t, (0, 1, 3, 2))


def _head_outer(xp, A, B, g, scale=1.0):
    """A_h B_h^T for each sample and head, times scale: (n, heads, T, T) as rows."""
    product = xp.reshape(_heads(xp, A, g) @ _swap(xp, _heads(xp, B, g)), (-1, g[2] * g[0]))
    return product if scale == 1.0 else product * scale


def _head_softmax(xp, S, g):
    """The softmax of each row of each head's T x T scores, its maximum subtracted first;
    causal: the key positions after the query's get probability 0."""
    s = _grid(xp, S, g)
    if g[3]:
        rows = xp.arange(g[0], device=getattr(S, "device", None))
        later = xp.reshape(rows, (1, -1)) > xp.reshape(rows, (-1, 1))
        s = xp.where(later, -xp.inf, s)
    e = xp.exp(s - xp.max(s, axis=-1, keepdims=True))
    return xp.reshape(e / xp.sum(e, axis=-1, keepdims=True), S.shape)


def _head_mix(xp, P, V, g):
    """P_h V_h for each sample and head, the heads side by side: (n*T, d)."""
    return _merged(xp, _grid(xp, P, g) @ _heads(xp, V, g), g)


def _head_mix_t(xp, P, D, g):
    """P_h^T D_h for each sample and head, the heads side by side: (n*T, d)."""
    return _merged(xp, _swap(xp, _grid(xp, P, g)) @ _heads(xp, D, g), g)


def _head_row_sum(xp, X, g):
    """Each row of each head's T x T block summed, repeated along the row."""
    x = _grid(xp, X, g)
    return xp.reshape(xp.broadcast_to(xp.sum(x, axis=-1, keepdims=True), x.shape), X.shape)


def _batches(n, batch_size, rng):
    """The index arrays of one epoch's batches (NumPy integers, from the NumPy generator
    `rng`, so the order is the NumPy module's): a permutation of the n samples cut into
    consecutive batches of batch_size, the last one smaller; one batch of everything, in
    order, when batch_size is None or not below n."""
    if batch_size is None or batch_size >= n:
        return [None]
    order = rng.permutation(n)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def _take(xp, x, index):
    """The samples (rows) `index` of x, or x for None."""
    if index is None:
        return x
    return xp.take(x, xp.asarray(index, device=x.device), axis=0)


def _clipped(xp, grads, clip_norm):
    """The gradients times min(1, clip_norm / (norm + 1e-6)), their global norm's clipping
    factor, as torch.nn.utils.clip_grad_norm_ does: always multiplied, never branched on."""
    if clip_norm is None:
        return grads
    total = xp.sqrt(sum(xp.sum(g * g) for g in grads.values()))
    factor = xp.minimum(clip_norm / (total + 1e-6), 1.0)
    return {key: g * factor for key, g in grads.items()}


def _optimizer_state(xp, params, optimizer, momentum):
    """An optimizer's initial state: its step count (a 0-d array) and its moments (zeros,
    which give PyTorch's first step exactly); the structure depends on the optimizer only."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    first = next(iter(params.values()))
    zeros = {key: xp.zeros_like(p) for key, p in params.items()}
    moments = {} if optimizer == "sgd" and not momentum else zeros
    second = {} if optimizer == "sgd" else dict(zeros)
    return {"step": xp.zeros_like(xp.sum(first)), "m": moments, "v": second}


def _plus_times(xp, p, a, g):
    """p + a g. On PyTorch with a Python number a: one kernel (torch.add's alpha), without
    the temporary a g, whose fresh allocation costs more than the arithmetic there."""
    if isinstance(a, (int, float)) and _library(xp) == "torch":
        import torch

        return torch.add(p, g, alpha=a)
    return p + a * g


def _optimizer_update(xp, params, grads, opt, lr, optimizer, momentum, betas, eps, weight_decay,
                      decayed):  # fmt: skip
    """(new params, new optimizer state) after one step on `grads`."""
    step = opt["step"] + 1
    new_params, m_all, v_all = {}, {}, {}
    b1, b2 = betas
    for key, p in params.items():
        g = grads[key]
        wd = weight_decay if key in decayed else 0.0
        if optimizer == "sgd":
            if wd:
                g = _plus_times(xp, g, wd, p)
            if momentum:
                g = m_all[key] = _plus_times(xp, g, momentum, opt["m"][key])
            new_params[key] = _plus_times(xp, p, -lr, g)
            continue
        if optimizer == "adamw" and wd:
            p = p * (1 - lr * wd)
        elif wd:  # Adam: L2 in the gradient
            g = _plus_times(xp, g, wd, p)
        m = opt["m"][key]
        m_all[key] = m = m + (1 - b1) * (g - m)
        v_all[key] = v = b2 * opt["v"][key] + (1 - b2) * (g * g)
        denom = xp.sqrt(v) / xp.sqrt(1 - b2**step) + eps
        new_params[key] = p - (lr / (1 - b1**step)) * (m / denom)
    return new_params, {"step": step, "m": m_all, "v": v_all}
