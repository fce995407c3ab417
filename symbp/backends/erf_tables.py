"""The error function's coefficient tables, shared by the backends' runtimes.

Each runtime imports them by name; symbp.backends.numpy.inline copies the ones a generated
module needs into it (with the comment lines above each), as it copies the helpers.
"""

# Coefficients of W. J. Cody's rational Chebyshev approximations to the error function
# (Math. Comp. 23 (1969) 631-637), as in his SPECFUN routine CALERF. With the numerator
# N(s) = c[-1] s^n + c[0] s^(n-1) + ... + c[-2] and the monic denominator
# D(s) = s^n + d[0] s^(n-1) + ... + d[-1] that _erf_ratio evaluates:
#   |x| < 1/2:        erf(x)  = x N_A(x^2) / D_B(x^2)
#   1/2 <= |x| < 4:   erfc(x) = exp(-x^2) N_C(x) / D_D(x)
#   |x| >= 4:         erfc(x) = exp(-x^2) (1/sqrt(pi) - z N_P(z) / D_Q(z)) / x,  z = 1/x^2
_ERF_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_ERF_B = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
_ERF_C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_ERF_D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
_ERF_P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_ERF_Q = (
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)

# For float32 (and narrower) arrays one rational function is enough: erf(x) = x P(x^2) / Q(x^2)
# with |x| clipped at 4, where erf rounds to 1 in float32; relative error 6.5e-8 on [0, 4]
# (symbp's own least-squares fit, bench/erf_fit.py), so within 2 float32 ulp once rounded.
_ERF_SP = (
    1.1283790946940673,
    0.2070858430897554,
    0.05151958548908347,
    0.0039889153391220395,
    0.0001472488091512957,
    -1.942229338606044e-06,
    1.9112868519972752e-08,
)
_ERF_SQ = (
    1.0,
    0.5168563056366223,
    0.11795438737288927,
    0.014954680753560465,
    0.0010207181467235303,
)
