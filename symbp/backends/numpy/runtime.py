"""The NumPy backend's runtime: the helpers generated modules call (stable sigmoid, softplus
and softmax forms, the softmax sums that leave a unit out, image convolution and pooling,
erf), as one real module that the tests import and check directly.

symbp.backends.numpy.inline copies the helpers a module uses, with what they use in turn,
into the generated file, which so stays standalone (it imports numpy alone). The names in
CONFIGURATION are the generated module's own: its header defines them for its dtype and
layout, and configure() sets them here for tests.
"""

import numpy as np

# --- configuration: defined by each generated module's header, never copied ---------------
CONFIGURATION = ("DTYPE", "UNIT_AXIS", "_EXP_FLOOR", "_EXP_CEIL", "_QUIET")
DTYPE = np.float64
UNIT_AXIS = 1  # the axis of a sample's units: 1 in row layout (n, units), 0 in column
_EXP_FLOOR = float(np.log(np.finfo(DTYPE).tiny)) + 1
_EXP_CEIL = float(np.log(np.finfo(DTYPE).max)) - 1
_QUIET = {"under": "ignore"}


def configure(dtype=np.float64, unit_axis=1):
    """Set the configuration as a generated module of that dtype and layout has it."""
    global DTYPE, UNIT_AXIS, _EXP_FLOOR, _EXP_CEIL
    DTYPE, UNIT_AXIS = np.dtype(dtype).type, unit_axis
    _EXP_FLOOR = float(np.log(np.finfo(DTYPE).tiny)) + 1
    _EXP_CEIL = float(np.log(np.finfo(DTYPE).max)) - 1


# --- helpers ------------------------------------------------------------------------------


def _exp(u):
    """exp(u) with u clipped to the range where the result is a normal, finite number."""
    return np.exp(np.clip(u, _EXP_FLOOR, _EXP_CEIL))


def _expm1(u):
    """exp(u) - 1, accurate near u = 0, with u clipped so that the result stays finite."""
    return np.expm1(np.minimum(u, _EXP_CEIL))


def _sigmoid(u, out=None):
    """1 / (1 + exp(-u)), with full relative accuracy in both tails: exp(-u) overflowing to
    inf (u below about -88 in float32, -709 in float64) gives the limit 0, not a warning."""
    t = np.negative(u, out=out)
    with np.errstate(over="ignore"):
        np.exp(t, out=t)
    t += 1
    return np.reciprocal(t, out=t)


def _softplus(u):
    """log(1 + exp(u)) = max(u, 0) + log(1 + exp(-|u|)), which cannot overflow."""
    return np.maximum(u, 0) + np.log1p(np.exp(np.maximum(-np.abs(u), _EXP_FLOOR)))


def _log_softplus(u):
    """log(softplus(u)); for u < 0, u + log(log1p(t) / t) with t = exp(u), finite where
    softplus(u) rounds to 0 (t is clipped at the smallest normal number, where the ratio is 1)."""
    t = np.exp(np.minimum(np.maximum(u, _EXP_FLOOR), 0))
    return np.where(u < 0, u + np.log(np.log1p(t) / t), np.log(_softplus(np.maximum(u, 0))))


def _softmax(Z, out=None, lse=False):
    """exp(z_k) / sum_m exp(z_m) over the units of each sample, shifted by the max;
    with lse=True, also log sum_k exp(z_k) (as _logsumexp computes it) for the loss."""
    m = Z.max(axis=UNIT_AXIS, keepdims=True)
    E = np.subtract(Z, m, out=out)
    np.maximum(E, _EXP_FLOOR, out=E)
    np.exp(E, out=E)
    total = E.sum(axis=UNIT_AXIS, keepdims=True)
    E /= total
    if not lse:
        return E
    return E, m + np.log(total)


def _logsumexp(Z):
    """log sum_k exp(z_k) over the units of each sample, shifted by the max."""
    m = Z.max(axis=UNIT_AXIS, keepdims=True)
    return m + np.log(np.exp(np.maximum(Z - m, _EXP_FLOOR)).sum(axis=UNIT_AXIS, keepdims=True))


def _log1m_softmax(Z):
    """log(1 - a_k) for a = softmax(Z): log1p(-a_k) where a_k <= 1/2, and for the largest unit
    of each sample log sum_(m != k) exp(z_m) - log sum_m exp(z_m), each shifted by its max."""
    lse = _logsumexp(Z)
    a = np.exp(np.maximum(Z - lse, _EXP_FLOOR))
    out = np.log1p(-np.minimum(a, 0.5))
    top = np.expand_dims(Z.argmax(axis=UNIT_AXIS), UNIT_AXIS)
    others = Z.copy()
    np.put_along_axis(others, top, -np.inf, axis=UNIT_AXIS)
    rest = _logsumexp(others) - lse
    np.put_along_axis(out, top, rest, axis=UNIT_AXIS)
    return out


def _exclusive_parts(Z):
    """What both helpers below read, per sample, with a = softmax(Z) and t the largest
    unit: t's index; e = exp(z - z_t) (so e_t = 1); d_k = sum_(m != k) e_m, >= 1 for k != t
    (1 at t, unused); q_i = a_i / (1 - a_t) for i != t, from the logits of the units other
    than t (0 at t). Only t can have 1 - a_t round to 0; every other k has 1 - a_k >= 1/2."""
    ax = UNIT_AXIS
    top = np.expand_dims(Z.argmax(axis=ax), ax)
    e = np.exp(np.maximum(Z - np.take_along_axis(Z, top, axis=ax), _EXP_FLOOR))
    d = e.sum(axis=ax, keepdims=True) - e
    np.put_along_axis(d, top, 1, axis=ax)
    others = Z.copy()
    np.put_along_axis(others, top, -np.inf, axis=ax)
    # z_i - lse(others) <= 0 for i != t; t's own entry is set to 0.
    q_top = np.exp(np.maximum(np.minimum(Z - _logsumexp(others), 0), _EXP_FLOOR))
    np.put_along_axis(q_top, top, 0, axis=ax)
    return top, e, d, q_top


def _exclusive_softmax(g, Z, over):
    """With a = softmax(Z) per sample and q_ik = a_i / (1 - a_k), the softmax of the units
    other than k at i: over=True gives sum_(k != j) g_k q_jk at each unit j, over=False
    sum_(i != k) g_i q_ik at each unit k. O(units) per sample."""
    ax = UNIT_AXIS
    g = np.broadcast_to(g, Z.shape)
    top, e, d, q_top = _exclusive_parts(Z)
    if over:
        w = g / d
        np.put_along_axis(w, top, 0, axis=ax)
        s = w.sum(axis=ax, keepdims=True)
        out = e * (s - w) + np.take_along_axis(g, top, axis=ax) * q_top
        np.put_along_axis(out, top, s, axis=ax)
        return out
    ge = g * e
    out = (ge.sum(axis=ax, keepdims=True) - ge) / d
    np.put_along_axis(out, top, (g * q_top).sum(axis=ax, keepdims=True), axis=ax)
    return out


def _exclusive_softmax_tangent(g, v, Z):
    """The derivative of _exclusive_softmax(g, Z, over=True) along Z' = v: at each unit j,
    sum_(k != j) g_k q_jk (v_j - u_k) with u_k = sum_(i != k) q_ik v_i. v_j - u_k is a
    difference of nearly equal numbers where q_jk is near 1: only at j = t (k != t), and at
    the largest of the others (k = t). There it is formed as a sum of small terms: at t,
    v_t - u_k = (p - e_k (v_t - v_k)) / d_k with p = sum_(i != t) e_i (v_t - v_i). O(units)
    per sample."""
    ax = UNIT_AXIS
    g, v = np.broadcast_to(g, Z.shape), np.broadcast_to(v, Z.shape)
    top, e, d, q_top = _exclusive_parts(Z)
    ev = e * v
    u = (ev.sum(axis=ax, keepdims=True) - ev) / d
    u_top = (q_top * v).sum(axis=ax, keepdims=True)
    np.put_along_axis(u, top, u_top, axis=ax)
    w = g / d
    np.put_along_axis(w, top, 0, axis=ax)
    s1, s2 = w.sum(axis=ax, keepdims=True), (w * u).sum(axis=ax, keepdims=True)
    # v_j - u_t; at the largest of the other units r, where q_rt is near 1, as the sum
    # sum_(i != t) q_it (v_r - v_i) of small terms.
    from_top = v - u_top
    r = np.expand_dims(q_top.argmax(axis=ax), ax)
    v_r = np.take_along_axis(v, r, axis=ax)
    np.put_along_axis(from_top, r, (q_top * (v_r - v)).sum(axis=ax, keepdims=True), axis=ax)
    out = e * (v * (s1 - w) - (s2 - w * u)) + np.take_along_axis(g, top, axis=ax) * q_top * from_top
    spread = e * (np.take_along_axis(v, top, axis=ax) - v)
    np.put_along_axis(spread, top, 0, axis=ax)
    p = spread.sum(axis=ax, keepdims=True)
    np.put_along_axis(out, top, (w * (p - spread) / d).sum(axis=ax, keepdims=True), axis=ax)
    return out


# Images are stored one sample per row, each as its C*H*W entries in C order (NCHW, as
# PyTorch); the helpers below view them as (n, C, H, W). g is a layer's geometry:
# (C, H, W, F, Ho, Wo, kh, kw, sh, sw, ph, pw) for input (C, H, W), output (F, Ho, Wo).
# Each writes its result into `out` when given (a workspace buffer of its shape).
def _image(A, g):
    return A.reshape(A.shape[0], g[0], g[1], g[2])


def _result(value, out):
    """value as a new array, or copied into out."""
    if out is None:
        return np.ascontiguousarray(value).reshape(value.shape[0], -1)
    np.copyto(out.reshape(value.shape), value)
    return out


def _padded(X, g):
    """X (n, C, H, W) with ph, pw rows and columns of zeros on each side."""
    ph, pw = g[10], g[11]
    if not (ph or pw):
        return X
    out = np.zeros((X.shape[0], X.shape[1], X.shape[2] + 2 * ph, X.shape[3] + 2 * pw), X.dtype)
    out[:, :, ph : ph + X.shape[2], pw : pw + X.shape[3]] = X
    return out


def _windows(X, g):
    """A strided view (n, C, Ho, Wo, kh, kw) of every window of X (n, C, H', W'): no copy."""
    kh, kw, sh, sw, Ho, Wo = g[6], g[7], g[8], g[9], g[4], g[5]
    view = np.lib.stride_tricks.sliding_window_view(X, (kh, kw), axis=(2, 3))
    return view[:, :, : (Ho - 1) * sh + 1 : sh, : (Wo - 1) * sw + 1 : sw]


def _per_channel(v, g):
    """A per-channel vector (C,) repeated over each channel's H*W positions."""
    return np.repeat(v, g[1])


def _channel_batch_sum(X, g):
    """The sum over the batch and the positions of each channel, repeated over them."""
    return np.repeat(np.reshape(X, (-1, g[0], g[1])).sum(axis=(0, 2)), g[1])


def _channel_total(X, g, out=None):
    """The sum over the batch and the positions of each channel: (C,)."""
    return np.sum(np.reshape(X, (-1, g[0], g[1])), axis=(0, 2), out=out)


def _offsets(g):
    """Each window position (p, q), row by row, with the slices of the input it reads
    across all windows at once: rows p, p + sh, ..., columns q, q + sw, ..."""
    Ho, Wo, kh, kw, sh, sw = g[4], g[5], g[6], g[7], g[8], g[9]
    for p in range(kh):
        for q in range(kw):
            yield p, q, (slice(p, p + (Ho - 1) * sh + 1, sh), slice(q, q + (Wo - 1) * sw + 1, sw))


def _spread(parts, g, out=None):
    """The transpose of _windows: parts (C, kh, kw, n, Ho, Wo) added back at the positions
    each window read, into zeros of the padded input's shape; the padding dropped."""
    C, H, W, ph, pw = g[0], g[1], g[2], g[10], g[11]
    n = parts.shape[3]
    full = np.zeros((n, C, H + 2 * ph, W + 2 * pw), parts.dtype)
    for p, q, (rows, cols) in _offsets(g):
        full[:, :, rows, cols] += parts[:, p, q].transpose(1, 0, 2, 3)
    return _result(full[:, :, ph : ph + H, pw : pw + W], out)


def _unfold(A, g, out=None):
    """The zero-padded input unfolded: (n, C kh kw Ho Wo), each sample's (C kh kw, Ho Wo)
    matrix in C order, whose column (i, j) holds the entries window (i, j) reads."""
    n, C, Ho, Wo, kh, kw = A.shape[0], g[0], g[4], g[5], g[6], g[7]
    view = _windows(_padded(_image(A, g), g), g).transpose(0, 1, 4, 5, 2, 3)
    cols = np.empty((n, C * kh * kw * Ho * Wo), A.dtype) if out is None else out
    np.copyto(cols.reshape(n, C, kh, kw, Ho, Wo), view)
    return cols


def _conv2d_columns(cols, W, b, g, out=None):
    """z = b + W times the unfolded input: one product per sample of the filters
    (F, C kh kw) with the sample's (C kh kw, Ho Wo) columns."""
    n, F, HoWo = cols.shape[0], g[3], g[4] * g[5]
    Z = np.matmul(
        W.reshape(F, -1),
        cols.reshape(n, -1, HoWo),
        out=None if out is None else out.reshape(n, F, HoWo),
    )
    if b is not None:
        Z += b[:, None]
    return Z.reshape(n, F * HoWo)


def _conv2d_back_kernel_columns(cols, D, g, out=None):
    """dL/dW: delta times the unfolded input transposed, summed over the batch."""
    n, F, HoWo = cols.shape[0], g[3], g[4] * g[5]
    per_sample = np.matmul(D.reshape(n, F, HoWo), cols.reshape(n, -1, HoWo).transpose(0, 2, 1))
    total = per_sample.sum(axis=0, out=None if out is None else out.reshape(F, -1))
    return total.reshape(F, g[0], g[6], g[7])


def _conv2d(A, W, b, g, out=None):
    """z = b + W correlated with the zero-padded image A (the forward mode's W a')."""
    return _conv2d_columns(_unfold(A, g), W, b, g, out)


def _conv2d_back_kernel(A, D, g, out=None):
    """dL/dW from the image A itself (the R-operator's a' correlated with delta)."""
    return _conv2d_back_kernel_columns(_unfold(A, g), D, g, out)


def _conv2d_back_input(D, W, g, out=None):
    """dL/da: delta fully correlated with the flipped kernel: W^T delta per position
    (C kh kw values each), added back where each window read its input."""
    C, F, Ho, Wo, kh, kw = g[0], g[3], g[4], g[5], g[6], g[7]
    n = D.shape[0]
    # one product over the whole batch (twice as fast here as one per sample)
    by_filter = np.ascontiguousarray(D.reshape(n, F, Ho * Wo).transpose(1, 0, 2))
    parts = W.reshape(F, -1).T @ by_filter.reshape(F, n * Ho * Wo)
    return _spread(parts.reshape(C, kh, kw, n, Ho, Wo), g, out)


def _maxpool(A, g, out=None):
    """The maximum of each window: an elementwise maximum over the kh kw positions."""
    X = _image(A, g)
    n, C, Ho, Wo = A.shape[0], g[0], g[4], g[5]
    best = np.empty((n, C, Ho, Wo), A.dtype) if out is None else out.reshape(n, C, Ho, Wo)
    for p, q, (rows, cols) in _offsets(g):
        if p == q == 0:
            np.copyto(best, X[:, :, rows, cols])
        else:
            np.maximum(best, X[:, :, rows, cols], out=best)
    return best.reshape(n, -1)


def _maxpool_hits(A, M, g):
    """For each window position's slices: where the window's first maximum is there, M
    being the maxima the forward pass took."""
    X = _image(A, g)
    best = M.reshape(A.shape[0], g[0], g[4], g[5])
    taken = np.zeros(best.shape, bool)
    for _, _, (rows, cols) in _offsets(g):
        hit = X[:, :, rows, cols] == best
        hit &= ~taken
        taken |= hit
        yield (rows, cols), hit


def _maxpool_route(A, M, D, g, out=None):
    """Each entry of D sent to the first maximum of its window of A."""
    C, H, W, Ho, Wo = g[0], g[1], g[2], g[4], g[5]
    n = D.shape[0]
    D4 = D.reshape(n, C, Ho, Wo)
    full = np.zeros((n, C, H, W), D.dtype)
    apart = g[8] >= g[6] and g[9] >= g[7]  # windows that do not overlap: each entry once
    for (rows, cols), hit in _maxpool_hits(A, M, g):
        if apart:
            np.multiply(hit, D4, out=full[:, :, rows, cols])
        else:
            full[:, :, rows, cols] += hit * D4
    return _result(full, out)


def _maxpool_pick(A, M, D, g, out=None):
    """The entry of D at the first maximum of each window of A."""
    n, C, Ho, Wo = A.shape[0], g[0], g[4], g[5]
    Dimg = _image(D, g)
    picked = np.zeros((n, C, Ho, Wo), D.dtype)
    for (rows, cols), hit in _maxpool_hits(A, M, g):
        picked += hit * Dimg[:, :, rows, cols]
    return _result(picked, out)


def _avgpool(A, g, out=None):
    """The mean of each window: the sum over the kh kw positions, divided."""
    X = _image(A, g)
    n, C, Ho, Wo = A.shape[0], g[0], g[4], g[5]
    total = np.empty((n, C, Ho, Wo), A.dtype) if out is None else out.reshape(n, C, Ho, Wo)
    total[...] = 0
    for _, _, (rows, cols) in _offsets(g):
        total += X[:, :, rows, cols]
    total /= g[6] * g[7]
    return total.reshape(n, -1)


def _avgpool_back(D, g, out=None):
    """Each entry of D spread over its window, 1/(kh kw) to each entry."""
    C, H, W, Ho, Wo = g[0], g[1], g[2], g[4], g[5]
    n = D.shape[0]
    share = D.reshape(n, C, Ho, Wo) / (g[6] * g[7])
    full = np.zeros((n, C, H, W), D.dtype)
    for _, _, (rows, cols) in _offsets(g):
        full[:, :, rows, cols] += share
    return _result(full, out)


def _copy(x, out=None):
    """A copy of x, into out when given (a workspace buffer)."""
    if out is None:
        return x.copy()
    np.copyto(out, x)
    return out


from symbp.backends.erf_tables import _ERF_A, _ERF_B, _ERF_C, _ERF_D, _ERF_P, _ERF_Q  # noqa: E402


def _erf_ratio(s, c, d):
    """N(s) / D(s) for the coefficients c, d laid out as above, by Horner's rule (float64)."""
    num = s * c[-1]
    num += c[0]
    den = s + d[0]
    for a, b in zip(c[1:-1], d[1:], strict=False):
        num *= s
        num += a
        den *= s
        den += b
    num /= den
    return num


def _gather64(flat, index):
    """flat[index] as a new float64 array."""
    return flat[index].astype(np.float64, copy=False)


def _times_gaussian(r, v):
    """r * exp(-v^2), into r; v is overwritten."""
    np.square(v, out=v)
    np.negative(v, out=v)
    r *= np.exp(v, out=v)
    return r


def _erf_block(x, out):
    """out[:] = erf(x) for a 1-D block x; each range is evaluated on its own entries only."""
    ax = np.abs(x)
    far = ax >= 0.5
    near = np.flatnonzero(~far)  # |x| < 1/2, and NaN
    tail = np.flatnonzero(ax >= 4.0)  # |x| >= 4, and +-inf
    mid = np.flatnonzero(far & (ax < 4.0)) if tail.size else np.flatnonzero(far)
    if near.size:
        v = _gather64(x, near)
        near_a = tuple(a - b for a, b in zip(_ERF_A, (*_ERF_B, 1.0), strict=True))  # N_A - D_B
        r = _erf_ratio(v * v, near_a, _ERF_B)
        r *= v
        r += v
        out[near] = r
    if mid.size:
        v = _gather64(x, mid)
        np.abs(v, out=v)
        r = _times_gaussian(_erf_ratio(v, _ERF_C, _ERF_D), v)
        out[mid] = np.subtract(1.0, r, out=r)
    if tail.size:
        v = _gather64(x, tail)
        np.minimum(np.abs(v, out=v), 6.0, out=v)
        z = np.reciprocal(v * v)
        r = _erf_ratio(z, _ERF_P, _ERF_Q)
        r *= z
        np.subtract(0.56418958354775628695, r, out=r)  # 1/sqrt(pi) - z N_P(z) / D_Q(z)
        r /= v
        out[tail] = np.subtract(1.0, _times_gaussian(r, v), out=r)
    np.copysign(out, x, out=out)


from symbp.backends.erf_tables import _ERF_SP, _ERF_SQ  # noqa: E402


def _erf_single(x, out):
    """out[:] = erf(x) for a 1-D block x of float32 or narrower, evaluated in float64."""
    v = np.clip(x, -4.0, 4.0, dtype=np.float64)
    s = v * v
    num = s * _ERF_SP[-1]
    for c in _ERF_SP[-2:0:-1]:
        num += c
        num *= s
    num += _ERF_SP[0]
    den = s * _ERF_SQ[-1]
    for c in _ERF_SQ[-2:0:-1]:
        den += c
        den *= s
    den += _ERF_SQ[0]
    num *= v
    num /= den
    out[:] = num


def _erf(u):
    """erf(u) to within a few ulp of u's precision, with u's dtype (float64 for integers).
    float64: Cody's approximations above, where below 1/2 it is x + x (N_A - D_B) / D_B, which
    rounds less than x N_A / D_B, and from 4 on |x| is clipped at 6, where erfc(x) < 2^-54 and
    erf(x) rounds to +-1 (also for +-inf); narrower floats: _erf_single. Blocks of 16384
    entries keep the scratch arrays small enough to stay in cache and be reused."""
    x = np.asarray(u)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    flat = x.astype(dtype, copy=False).ravel()
    out = np.empty(x.shape, dtype)
    erf = out.reshape(-1)
    block = _erf_single if dtype.itemsize < 8 else _erf_block
    for i in range(0, flat.size, 16384):
        block(flat[i : i + 16384], erf[i : i + 16384])
    return out if out.ndim else out[()]


# Per-sample tensors (symbp.ir.tensor_ops): each sample is stored as the prod(shape) entries
# of its tensor in C order, along the units axis; these view the samples as their shape.
def _samples(x, shape):
    """x viewed as (n, *shape), one sample per leading entry."""
    rows = x if UNIT_AXIS == 1 else x.T
    return np.reshape(rows, (-1, *shape))


def _stored(t, like):
    """(n, *shape) back to the module's storage, one row (or column) of entries a sample."""
    rows = np.reshape(t, (t.shape[0], -1))
    return rows if UNIT_AXIS == 1 or like is None else np.ascontiguousarray(rows.T)


def _axis_sum(x, shape, axes):
    """The sum of each sample over its axes `axes`, broadcast back to the sample's shape."""
    t = _samples(x, shape)
    total = t.sum(axis=tuple(a + 1 for a in axes), keepdims=True)
    return _stored(np.broadcast_to(total, t.shape), x)


def _permute(x, shape, order):
    """Each sample's axes in `order`."""
    t = _samples(x, shape)
    return _stored(np.transpose(t, (0, *(a + 1 for a in order))), x)


def _slice(x, shape, axis, start, stop):
    """Entries start..stop-1 along one axis of each sample."""
    t = _samples(x, shape)
    index = [slice(None)] * t.ndim
    index[axis + 1] = slice(start, stop)
    return _stored(t[tuple(index)], x)


def _embed(x, shape, axis, start, stop, full):
    """Each sample of `shape` placed at start..stop-1 along an axis of a zero tensor of
    shape `full` (the adjoint of _slice)."""
    t = _samples(x, shape)
    out = np.zeros((t.shape[0], *full), dtype=t.dtype)
    index = [slice(None)] * out.ndim
    index[axis + 1] = slice(start, stop)
    out[tuple(index)] = t
    return _stored(out, x)


def _step(x, shape, axis, index):
    """Entry `index` along one axis of each sample (that axis dropped): step t of a sequence."""
    t = _samples(x, shape)
    taken = np.take(t, index, axis=axis + 1)
    return _stored(taken, x)


def _put_step(target, shape, axis, index, value):
    """Write `value` (each sample without that axis) at entry `index` along one axis of each
    sample of `target`, in place; target."""
    t = _samples(target, shape)
    index_at = [slice(None)] * t.ndim
    index_at[axis + 1] = index
    t[tuple(index_at)] = _samples(value, tuple(n for k, n in enumerate(shape) if k != axis))
    return target


# --- training -------------------------------------------------------------------------------
# The optimizers with PyTorch's formulas (torch.optim.SGD without dampening or Nesterov,
# Adam and AdamW with bias correction), functional: each step returns new dicts and changes
# nothing it is given. `decayed` names the parameters weight decay covers (weights and
# kernels; not biases, not a norm's scale and shift).
OPTIMIZERS = ("sgd", "adam", "adamw")


# A sequence network (input (T, d)) computes on the n*T rows of its samples' positions:
# its inputs and targets come in as (n, T, ...) and its outputs go back out that way.
def _sequence_rows(X, shape):
    """A batch of sequences (n, *shape) as the rows of its positions, (n*T, d)."""
    X = np.asarray(X, dtype=DTYPE)
    if X.shape[1:] != tuple(shape):
        raise ValueError(
            f"expected an array of shape (n, {', '.join(map(str, shape))}), got {X.shape}"
        )
    return X.reshape(-1, shape[-1])


def _sequence_targets(Y, shape, ids):
    """Targets (n, T, k) as the rows of their positions, (n*T, k); with `ids` (cross-entropy),
    also class ids (n, T), integers in [0, k), read as one-hot rows."""
    Y = np.asarray(Y)
    if ids and Y.shape[1:] == tuple(shape[:-1]):
        if Y.dtype.kind not in "iu":
            raise ValueError(f"class ids must be integers, got dtype {Y.dtype}")
        if Y.size and (Y.min() < 0 or Y.max() >= shape[-1]):
            raise ValueError(f"class ids must lie in [0, {shape[-1]}), got {Y.min()}..{Y.max()}")
        return np.eye(shape[-1], dtype=DTYPE)[Y.reshape(-1)]
    return _sequence_rows(Y, shape)


def _sequences(A, shape):
    """The rows of the positions (n*T, k) back as sequences (n, T, k)."""
    return A.reshape(-1, *shape)


def _token_ids(X, shape, vocab):
    """Token ids (n, T), integers in [0, vocab), as the n*T ids of the positions."""
    X = np.asarray(X)
    if X.shape[1:] != tuple(shape):
        raise ValueError(f"expected token ids of shape (n, {shape[0]}), got {X.shape}")
    if X.dtype.kind not in "iu":
        raise ValueError(f"token ids must be integers, got dtype {X.dtype}")
    if X.size and (X.min() < 0 or X.max() >= vocab):
        raise ValueError(f"token ids must lie in [0, {vocab}), got {X.min()}..{X.max()}")
    return X.reshape(-1).astype(np.intp, copy=False)


# The token embedding. g = (V, dim, T): the vocabulary, the width, the positions.
def _lookup(E, ids, g, out=None):
    """Row ids[r] of the table E for each position r."""
    return np.take(E, ids, axis=0, out=out)


def _tile_positions(P, ids, g, out=None):
    """Row t of P for each position r = s T + t: the same rows for every sample."""
    tiled = np.broadcast_to(P, (ids.shape[0] // g[2], *P.shape)).reshape(-1, P.shape[1])
    return _result(tiled, out)


def _sinusoid_rows(E, ids, g, out=None):
    """Vaswani et al.'s positions, computed in float64 then cast, for each position r = s T
    + t: P[t, 2i] = sin(t / 10000^(2i/dim)), P[t, 2i+1] = cos(t / 10000^(2i/dim))."""
    t = np.arange(g[2], dtype=np.float64)[:, None]
    angle = t / 10000.0 ** (2 * (np.arange(g[1]) // 2) / g[1])
    table = np.where(np.arange(g[1]) % 2 == 0, np.sin(angle), np.cos(angle)).astype(E.dtype)
    return _tile_positions(table, ids, g, out)


def _scatter_rows(D, ids, g, out=None):
    """Row v: the sum of the rows of D at the positions whose token is v (an exact
    scatter-add: a token that occurs several times adds up). The rows sorted by token, then
    each token's run summed by np.add.reduceat: measured 2.5x faster than the one-hot
    product at V = 96 and 18x at V = 5000 (the product costs V n T d), 5x faster than
    np.add.at, 2.4x than a bincount per column (1024 positions, d = 128)."""
    order = np.argsort(ids, kind="stable")
    tokens = ids[order]
    starts = np.flatnonzero(np.concatenate(([True], tokens[1:] != tokens[:-1])))
    result = np.zeros((g[0], D.shape[1]), dtype=D.dtype) if out is None else out
    result[...] = 0
    result[tokens[starts]] = np.add.reduceat(D[order], starts, axis=0)
    return result


def _position_total(D, g, out=None):
    """Row t: the sum over the samples of D's row at position t."""
    return np.sum(D.reshape(-1, g[2], g[1]), axis=0, out=out)


# flatten on a sequence. g = (T, d).
def _fold_positions(A, g, out=None):
    """The n*T rows of d as n rows of T*d: sample s's positions side by side (a copy)."""
    return _copy(A.reshape(-1, g[0] * g[1]), out)


def _unfold_positions(D, g, out=None):
    """The n rows of T*d back as the n*T rows of d of the positions (a copy)."""
    return _copy(D.reshape(-1, g[1]), out)


# Multi-head attention. g = (T, d, heads, causal). (n*T, d) arrays hold head h in columns
# h d_h .. (h+1) d_h - 1; score arrays hold (n, heads, T, T) in that order.
def _heads(x, g):
    """(n*T, d) rows as (n, heads, T, d_h)."""
    T, d, h = g[0], g[1], g[2]
    return x.reshape(-1, T, h, d // h).transpose(0, 2, 1, 3)


def _merged(t, g, out=None):
    """(n, heads, T, d_h) back as (n*T, d): the heads side by side."""
    rows = t.transpose(0, 2, 1, 3)
    if out is None:
        return rows.reshape(-1, g[1])
    np.copyto(out.reshape(rows.shape), rows)
    return out


def _grid(x, g):
    """A score array as (n, heads, T, T)."""
    return x.reshape(-1, g[2], g[0], g[0])


def _head_outer(A, B, g, out=None, scale=1.0):
    """A_h B_h^T for each sample and head, times scale (in place): (n, heads, T, T) as rows."""
    a, b = _heads(A, g), _heads(B, g)
    n = a.shape[0]
    into = None if out is None else out.reshape(n, g[2], g[0], g[0])
    product = np.matmul(a, b.swapaxes(-1, -2), out=into)
    if scale != 1.0:
        product *= scale
    return product.reshape(n * g[0], -1)


def _head_softmax(S, g, out=None):
    """The softmax of each row of each head's T x T scores, its maximum subtracted first;
    causal: the key positions after the query's get probability 0."""
    s = _grid(S, g)
    e = _grid(out, g) if out is not None else np.empty_like(s)
    if g[3]:
        np.copyto(e, -np.inf)
        np.copyto(e, s, where=np.tri(g[0], dtype=bool))
    else:
        np.copyto(e, s)
    e -= e.max(axis=-1, keepdims=True)  # one array for the whole computation
    np.exp(e, out=e)
    e /= e.sum(axis=-1, keepdims=True)
    return e.reshape(S.shape) if out is None else out


def _head_mix(P, V, g, out=None):
    """P_h V_h for each sample and head, the heads side by side: (n*T, d)."""
    return _merged(np.matmul(_grid(P, g), _heads(V, g)), g, out)


def _head_mix_t(P, D, g, out=None):
    """P_h^T D_h for each sample and head, the heads side by side: (n*T, d)."""
    return _merged(np.matmul(_grid(P, g).swapaxes(-1, -2), _heads(D, g)), g, out)


def _head_row_sum(X, g, out=None):
    """Each row of each head's T x T block summed, repeated along the row."""
    x = _grid(X, g)
    return _result(np.broadcast_to(x.sum(axis=-1, keepdims=True), x.shape).reshape(X.shape), out)


# Recurrent layers. g = (T, h, blocks, carries, last, summed, G, cell): a kept row holds
# `blocks` blocks of h (the new carries first), the gates' errors G h (2 G h unless summed).
# The step functions are the module's own, printed from SymPy's derivation of the cell;
# each writes its row block into the loop's array (its last argument) and may change v, a
# new array made for the step.
def _recurrent_forward(step, U, Whh, bhh, g, out=None):
    """The forward loop: each step's v = h_(t-1) Whh^T + bhh, then the cell's step on u_t,
    v and the carries of the step before (zero before the first); every step's kept row."""
    T, h, width = g[0], g[1], g[2] * g[1]
    n = U.shape[0] // T
    kept = np.empty((n, T, width), dtype=U.dtype) if out is None else out.reshape(n, T, width)
    steps = U.reshape(n, T, -1)
    prev = np.zeros((n, g[3] * h), dtype=U.dtype)
    for t in range(T):
        v = prev[:, :h] @ Whh.T
        if bhh is not None:
            v += bhh
        step(steps[:, t], v, prev, kept[:, t])
        prev = kept[:, t, : g[3] * h]
    return kept.reshape(n * T, width)


def _recurrent_output(S, g, out=None):
    """Each step's h (the first block of its kept row), or the last step's only."""
    T, h = g[0], g[1]
    rows = S.reshape(-1, T, S.shape[1])
    return _result(rows[:, T - 1, :h] if g[4] else rows[:, :, :h].reshape(-1, h), out)


def _previous_outputs(S, g, out=None):
    """h_(t-1) for each row: the step before's h, zero for the first step."""
    T, h = g[0], g[1]
    rows = S.reshape(-1, T, S.shape[1])
    shifted = np.zeros((rows.shape[0], T, h), dtype=S.dtype) if out is None else out
    shifted = shifted.reshape(rows.shape[0], T, h)
    shifted[:, 0] = 0
    shifted[:, 1:] = rows[:, :-1, :h]
    return shifted.reshape(-1, h)


def _incoming(D, t, g):
    """dL/dh_t from the layers above: row t of each sample's D, or D itself at the last
    step when the layer returns h_T only (None before it, and None for no D)."""
    if D is None:
        return None
    if g[4]:
        return D if t == g[0] - 1 else None
    return D.reshape(-1, g[0], g[1])[:, t]


def _recurrent_backward(back, S, Whh, D, g, out=None):
    """Backpropagation through time: for t = T..1, the carries' incoming errors (the
    layers' above, plus dv W_hh from the step after) through the cell's backward step;
    every step's dL/du (and dL/dv beside it unless summed)."""
    T, h, width, carries, G = g[0], g[1], g[2] * g[1], g[3] * g[1], g[6] * g[1]
    n = S.shape[0] // T
    wide = G if g[5] else 2 * G
    errors = np.empty((n, T, wide), dtype=S.dtype) if out is None else out.reshape(n, T, wide)
    kept = S.reshape(n, T, width)
    zero = np.zeros((n, carries), dtype=S.dtype)
    incoming = np.zeros((n, carries), dtype=S.dtype)
    for t in range(T - 1, -1, -1):
        above = _incoming(D, t, g)
        if above is not None:
            incoming[:, :h] += above
        dv, before = back(kept[:, t], kept[:, t - 1, :carries] if t else zero, incoming,
                          errors[:, t])  # fmt: skip
        incoming = before
        incoming[:, :h] += dv @ Whh
    return errors.reshape(n * T, wide)


def _gate_errors(E, g, out=None):
    """dL/du: the first G h entries of each row of the gates' errors."""
    return _result(E[:, : g[6] * g[1]], out)


def _hidden_gate_errors(E, g, out=None):
    """dL/dv: the second G h entries of each row, or the first when the cell reads u + v."""
    G = g[6] * g[1]
    return _result(E[:, :G] if g[5] else E[:, G:], out)


def _recurrent_tangent(step, S, Ud, Whh, Whhd, bhhd, g, out=None):
    """The tangents' forward loop: v' = h'_(t-1) Whh^T + h_(t-1) Whh'^T + bhh', then the
    cell's tangent step; the tangent of every kept row."""
    T, h, width, carries = g[0], g[1], g[2] * g[1], g[3] * g[1]
    n = S.shape[0] // T
    moved = np.empty((n, T, width), dtype=S.dtype) if out is None else out.reshape(n, T, width)
    kept = S.reshape(n, T, width)
    steps = Ud.reshape(n, T, -1)
    zero = np.zeros((n, carries), dtype=S.dtype)
    prev_d = zero
    for t in range(T):
        prev = kept[:, t - 1, :carries] if t else zero
        vd = prev_d[:, :h] @ Whh.T
        if Whhd is not None:
            vd += prev[:, :h] @ Whhd.T
        if bhhd is not None:
            vd += bhhd
        step(kept[:, t], prev, steps[:, t], vd, prev_d, moved[:, t])
        prev_d = moved[:, t, :carries]
    return moved.reshape(n * T, width)


def _recurrent_r_backward(step, S, Sd, Whh, Whhd, D, RD, g, out=None):
    """The R-operator of backpropagation through time: the backward loop with, beside each
    carry's error, its R (R{dv} W_hh + dv W_hh' to the step before); every step's
    R{dL/du} (and R{dL/dv})."""
    T, h, width, carries, G = g[0], g[1], g[2] * g[1], g[3] * g[1], g[6] * g[1]
    n = S.shape[0] // T
    wide = G if g[5] else 2 * G
    errors = np.empty((n, T, wide), dtype=S.dtype) if out is None else out.reshape(n, T, wide)
    kept, moved = S.reshape(n, T, width), Sd.reshape(n, T, width)
    zero = np.zeros((n, carries), dtype=S.dtype)
    incoming, r_incoming = zero.copy(), zero.copy()
    for t in range(T - 1, -1, -1):
        above = _incoming(D, t, g)
        if above is not None:
            incoming[:, :h] += above
        r_above = _incoming(RD, t, g)
        if r_above is not None:
            r_incoming[:, :h] += r_above
        prev, prev_d = (kept[:, t - 1, :carries], moved[:, t - 1, :carries]) if t else (zero, zero)
        dv, before, rdv, r_before = step(
            kept[:, t], prev, moved[:, t], prev_d, incoming, r_incoming, errors[:, t]
        )
        incoming, r_incoming = before, r_before
        incoming[:, :h] += dv @ Whh
        r_incoming[:, :h] += rdv @ Whh
        if Whhd is not None:
            r_incoming[:, :h] += dv @ Whhd
    return errors.reshape(n * T, wide)


# what the module template's step and train call (every module has them)
TEMPLATE_CALLS = ("_batches", "_take", "_clipped", "_optimizer_state", "_optimizer_update")


def _batches(n, batch_size, rng):
    """The index arrays of one epoch's batches: a permutation of the n samples cut into
    consecutive batches of batch_size (the last one smaller); one batch of everything, in
    order, when batch_size is None or not below n."""
    if batch_size is None or batch_size >= n:
        return [None]
    order = rng.permutation(n)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def _take(x, index):
    """The samples `index` of x (axis 0 in row layout, 1 in column), or x for None."""
    if index is None:
        return x
    return np.take(x, index, axis=1 - UNIT_AXIS if np.ndim(x) == 2 else 0)


def _clipped(grads, clip_norm):
    """The gradients scaled so their global norm is at most clip_norm, as
    torch.nn.utils.clip_grad_norm_ does (a factor clip_norm / (norm + 1e-6), if below 1)."""
    if clip_norm is None:
        return grads
    total = float(
        np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
    )
    factor = clip_norm / (total + 1e-6)
    if factor >= 1:
        return grads
    return {key: (g * factor).astype(g.dtype, copy=False) for key, g in grads.items()}


def _optimizer_state(params, optimizer):
    """An optimizer's initial state: its step count and its moments."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    return {"step": 0, "m": {}, "v": {}}


def _optimizer_update(params, grads, opt, lr, optimizer, momentum, betas, eps, weight_decay,
                      decayed):  # fmt: skip
    """(new params, new optimizer state) after one step on `grads`."""
    step = opt["step"] + 1
    new_params, m_all, v_all = {}, {}, {}
    # Python floats: a NumPy float64 scalar (an lr from np.cos, say) would make a float32
    # network's parameters float64
    lr, momentum, eps, weight_decay = float(lr), float(momentum), float(eps), float(weight_decay)
    b1, b2 = float(betas[0]), float(betas[1])
    for key, p in params.items():
        g = grads[key]
        wd = weight_decay if key in decayed else 0.0
        if optimizer == "sgd":
            if wd:
                g = g + wd * p
            if momentum:  # the first buffer is a copy: g may be a workspace's array
                g = np.array(g) if key not in opt["m"] else momentum * opt["m"][key] + g
                m_all[key] = g
            new_params[key] = p - lr * g
            continue
        if optimizer == "adamw" and wd:
            p = p * (1 - lr * wd)
        elif wd:  # Adam: L2 in the gradient
            g = g + wd * p
        m = opt["m"].get(key, np.zeros_like(p))
        v = opt["v"].get(key, np.zeros_like(p))
        m_all[key] = m = m + (1 - b1) * (g - m)
        v_all[key] = v = b2 * v + (1 - b2) * (g * g)
        denom = np.sqrt(v) / (1 - b2**step) ** 0.5 + eps
        new_params[key] = p - (lr / (1 - b1**step)) * (m / denom)
    return new_params, {"step": step, "m": m_all, "v": v_all}
