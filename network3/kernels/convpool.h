/* Fused convolution + max-pooling + bias + activation, forward and backward.
 *
 * The mathematics of ConvPoolLayer (Theano's conv2d with flipped filters,
 * max-pooling over blocks that tile the map, then bias and activation), done
 * in one pass per pooled row so that the 24x24 convolution output never
 * leaves registers.  Shapes are template parameters: the compiler sees every
 * loop bound, unrolls, and keeps the accumulators in vector registers.
 *
 * Backward uses the pooling mask written by the forward pass: bit p*PW+q of
 * a pooled value is set when conv position (p, q) of its block equals the
 * block's maximum.  Every tied maximum receives the gradient, as Theano's
 * max-pool gradient does; positions that are not maxima get nothing, so the
 * weight gradient only visits one conv position in PH*PW.
 *
 * Vectors are GCC vector extensions: no intrinsics, so the same code builds for
 * SSE, AVX, AVX-512 or NEON, whatever the compiler targets (GCC 9 or later, or
 * clang, in C++14 or later).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <type_traits>

namespace n3 {

enum { LINEAR = 0, SIGMOID = 1, TANH = 2, RELU = 3 };

template <typename T> struct Vec;
template <> struct Vec<float> {
    typedef float type __attribute__((vector_size(32)));
    typedef float unaligned __attribute__((vector_size(32), aligned(4)));
    typedef int32_t ints __attribute__((vector_size(32)));
    enum { N = 8 };
};
template <> struct Vec<double> {
    typedef double type __attribute__((vector_size(32)));
    typedef double unaligned __attribute__((vector_size(32), aligned(8)));
    typedef int64_t ints __attribute__((vector_size(32)));
    enum { N = 4 };
};

template <typename T>
static inline typename Vec<T>::type load(const T* p) {
    return *(const typename Vec<T>::unaligned*)p;
}
template <typename T>
static inline void store(T* p, typename Vec<T>::type v) {
    *(typename Vec<T>::unaligned*)p = v;
}

/* Keeps v in a register: without it GCC reloads a vector from memory for every
 * multiply-add that uses it, and the loads, not the arithmetic, set the pace.  Only
 * where a whole vector fits one register (AVX); elsewhere it does nothing. */
template <typename V>
static inline __attribute__((always_inline)) void in_register(V& v) {
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX__)
    __asm__("" : "+x"(v));
#else
    (void)v;
#endif
}

/* out[l] = (a ++ b)[idx[l]]: GCC's __builtin_shuffle, or lane by lane elsewhere. */
template <typename V, typename I>
static inline __attribute__((always_inline)) V shuffle(V a, V b, I idx) {
#if defined(__GNUC__) && !defined(__clang__)
    return __builtin_shuffle(a, b, idx);
#else
    enum { N = sizeof(V) / sizeof(a[0]) };
    V out;
    for (int l = 0; l < N; ++l) out[l] = idx[l] < N ? a[idx[l]] : b[idx[l] - N];
    return out;
#endif
}

/* exp(x) for float, written so that a loop of it vectorizes: Cephes' expf, about
 * 1 ulp.  With n = round(x / ln 2), exp(x) = 2^n exp(r), r = x - n ln 2 (ln 2 in two
 * parts); exp(r) is a degree-6 polynomial.  X is a float or a vector of floats. */
template <typename X>
static inline X exp_reduced(X x, X n) {
    const X r = x - n * 0.693359375f + n * 2.12194440e-4f;
    X p = X{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return p * r * r + r + 1.0f;
}

static inline float exp_vec(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    const float n = floorf(x * 1.44269504088896341f + 0.5f);
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return exp_reduced(x, n) * scale;
}
static inline double exp_vec(double x) { return exp(x); }

template <typename T, int ACT>
static inline T activate(T z) {
    if (ACT == SIGMOID) return T(1) / (T(1) + exp_vec(-z));
    if (ACT == TANH) return tanh(z);
    if (ACT == RELU) return z > T(0) ? z : T(0);
    return z;
}

/* d activation / dz, from the activation's output a. */
template <typename T, int ACT>
static inline T activation_slope(T a) {
    if (ACT == SIGMOID) return a * (T(1) - a);
    if (ACT == TANH) return T(1) - a * a;
    if (ACT == RELU) return a > T(0) ? T(1) : T(0);
    return T(1);
}

/* exp_vec on a whole vector of floats. */
static inline Vec<float>::type exp_vec(Vec<float>::type x) {
    typedef Vec<float>::type V;
    typedef Vec<float>::ints I;
    const V lo = V{} - 87.3f, hi = V{} + 88.3f;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    const V t = x * 1.44269504088896341f + 0.5f;
    I n_int = __builtin_convertvector(t, I);          /* rounds toward zero ... */
    V n = __builtin_convertvector(n_int, V);
    const I above = n > t;                            /* ... so step down where that was up */
    n = above ? n - 1.0f : n;
    n_int = n_int + above;
    return exp_reduced(x, n) * (V)((n_int + 127) << 23);
}

template <typename T, int ACT>
static inline typename Vec<T>::type activate_vec(typename Vec<T>::type z) {
    typedef typename Vec<T>::type V;
    if (ACT == RELU) return z > V{} ? z : V{};
    if (ACT == LINEAR) return z;
    V out;
    for (int l = 0; l < Vec<T>::N; ++l) out[l] = activate<T, ACT>(z[l]);
    return out;
}
template <>
inline Vec<float>::type activate_vec<float, SIGMOID>(Vec<float>::type z) {
    return 1.0f / (1.0f + exp_vec(-z));
}

template <typename T, int C, int H, int W, int F, int KH, int KW, int PH, int PW, int ACT>
struct ConvPool {
    enum {
        HC = H - KH + 1, WC = W - KW + 1, OH = HC / PH, OW = WC / PW,
        VN = Vec<T>::N,
        NV = WC / VN,            /* whole vectors in a conv row */
        TAIL = WC % VN,          /* the rest, done one by one */
        /* filters per block: as many as keep the accumulators in about 24 registers */
        NACC = PH * (NV + (TAIL > 0)),
        FB = (F % 4 == 0 && 4 * NACC <= 24) ? 4 : (F % 2 == 0 && 2 * NACC <= 24) ? 2 : 1,
        /* pooling pairs of columns with vector shuffles needs whole vectors */
        SHUFFLE_POOL = PW == 2 && TAIL == 0 && NV > 0,
        KWV = (KW + VN - 1) / VN,  /* vectors per filter row */
        PAD = KWV * VN,           /* scratch images are padded by this much */
        GRAD_DOUBLES = F * C * KH * KWV * VN + F,  /* weight_grads' scratch */
        FILTER_VECTORS = F * C * KH * KWV           /* input_grads' scratch */
    };
    typedef typename Vec<T>::type V;
    typedef typename Vec<T>::ints I;

    /* The conv rows of pooled row oy for filters f0 .. f0+FB-1: a separate function,
     * so that the compiler allocates its registers for this loop alone. */
    static __attribute__((noinline)) void accumulate(
            const T* __restrict xn, const T* __restrict w, int f0, int oy,
            V (&acc)[FB][PH][NV + 1], T (&tail)[FB][PH][TAIL + 1]) {
                    for (int fb = 0; fb < FB; ++fb)
                        for (int p = 0; p < PH; ++p) {
                            for (int v = 0; v < NV; ++v) acc[fb][p][v] = V{};
                            for (int t = 0; t < TAIL; ++t) tail[fb][p][t] = 0;
                        }
                    for (int c = 0; c < C; ++c)
                        for (int p = 0; p < PH; ++p)
                            for (int i = 0; i < KH; ++i) {
                                const T* xr = xn + ((size_t)c * H + oy * PH + p + i) * W;
                                for (int j = 0; j < KW; ++j) {
                                    V xv[NV + 1];
                                    for (int v = 0; v < NV; ++v) {
                                        xv[v] = load(xr + j + v * VN);
                                        in_register(xv[v]);
                                    }
                                    for (int fb = 0; fb < FB; ++fb) {
                                        /* conv2d flips the filter */
                                        const T wv = w[(((size_t)(f0 + fb) * C + c) * KH
                                                        + KH - 1 - i) * KW + KW - 1 - j];
                                        for (int v = 0; v < NV; ++v) acc[fb][p][v] += wv * xv[v];
                                        for (int t = 0; t < TAIL; ++t)
                                            tail[fb][p][t] += wv * xr[j + NV * VN + t];
                                    }
                                }
                            }
    }

    /* x (B,C,H,W), w (F,C,KH,KW), bias (F) -> a (B,F,OH,OW), mask (B,F,OH,OW); a null
     * mask (inference) is not computed.
     * Pooled row by pooled row, FB filters at a time: the convolution's rows stay
     * in registers, are max-pooled there, and only the pooled values are stored. */
    static void forward(int B, const T* __restrict x, const T* __restrict w,
                        const T* __restrict bias, T* __restrict a, uint8_t* __restrict mask) {
        for (int n = 0; n < B; ++n) {
            const T* xn = x + (size_t)n * C * H * W;
            for (int f0 = 0; f0 < F; f0 += FB) {
                for (int oy = 0; oy < OH; ++oy) {
                    V acc[FB][PH][NV + 1];
                    T tail[FB][PH][TAIL + 1];
                    accumulate(xn, w, f0, oy, acc, tail);
                    for (int fb = 0; fb < FB; ++fb) {
                        const size_t out = (((size_t)n * F + f0 + fb) * OH + oy) * OW;
                        uint8_t* mask_out = mask ? mask + out : nullptr;
                        if (SHUFFLE_POOL)
                            pool_pairs(acc[fb], bias[f0 + fb], a + out, mask_out);
                        else
                            pool_any(acc[fb], tail[fb], bias[f0 + fb], a + out, mask_out);
                    }
                }
                /* the activation, over whole maps: long runs of full vectors */
                activate_all(a + ((size_t)n * F + f0) * OH * OW, FB * OH * OW);
            }
        }
    }

    static inline void activate_all(T* __restrict z, int count) {
        int k = 0;
        for (; k + VN <= count; k += VN) store(z + k, activate_vec<T, ACT>(load(z + k)));
        for (; k < count; ++k) z[k] = activate<T, ACT>(z[k]);
    }

    /* PW == 2: even and odd columns of each pair of row vectors, by shuffles. */
    static inline __attribute__((always_inline)) void pool_pairs(const V (*acc)[NV + 1], T bias, T* a, uint8_t* mask) {
        I even, odd;
        for (int l = 0; l < VN; ++l) {
            even[l] = (2 * l) % (2 * VN);
            odd[l] = (2 * l + 1) % (2 * VN);
        }
        for (int g = 0; g < (NV + 1) / 2; ++g) {
            const int v1 = 2 * g + 1 < NV ? 2 * g + 1 : 2 * g;   /* odd NV: last vector alone */
            V col[PH][2], best;
            for (int p = 0; p < PH; ++p) {
                col[p][0] = shuffle(acc[p][2 * g], acc[p][v1], even);
                col[p][1] = shuffle(acc[p][2 * g], acc[p][v1], odd);
            }
            best = col[0][0];
            for (int p = 0; p < PH; ++p)
                for (int q = 0; q < 2; ++q) best = col[p][q] > best ? col[p][q] : best;
            I bits = I{};
            if (mask)
                for (int p = 0; p < PH; ++p)
                    for (int q = 0; q < 2; ++q) bits |= (col[p][q] == best) & (1 << (p * 2 + q));
            const V out = best + bias;
            const int lanes = 2 * g + 1 < NV ? VN : VN / 2;
            if (lanes == VN) {
                store(a + g * VN, out);
            } else {
                for (int l = 0; l < lanes; ++l) a[g * VN + l] = out[l];
            }
            if (mask) {
                typedef uint8_t Bytes __attribute__((vector_size(VN)));
                const Bytes packed = __builtin_convertvector(bits, Bytes);
                memcpy(mask + g * VN, &packed, lanes);
            }
        }
    }

    /* Any block shape, one pooled value at a time. */
    static inline __attribute__((always_inline)) void pool_any(const V (*acc)[NV + 1], const T (*tail)[TAIL + 1], T bias,
                                T* a, uint8_t* mask) {
        T conv[PH][WC];
        for (int p = 0; p < PH; ++p) {
            for (int v = 0; v < NV; ++v) store(conv[p] + v * VN, acc[p][v]);
            for (int t = 0; t < TAIL; ++t) conv[p][NV * VN + t] = tail[p][t];
        }
        for (int ox = 0; ox < OW; ++ox) {
            T best = conv[0][ox * PW];
            for (int p = 0; p < PH; ++p)
                for (int q = 0; q < PW; ++q)
                    best = conv[p][ox * PW + q] > best ? conv[p][ox * PW + q] : best;
            if (mask) {
                unsigned bits = 0;
                for (int p = 0; p < PH; ++p)
                    for (int q = 0; q < PW; ++q)
                        bits |= (unsigned)(conv[p][ox * PW + q] == best) << (p * PW + q);
                mask[ox] = (uint8_t)bits;
            }
            a[ox] = best + bias;
        }
    }

    /* delta = gz * activation'(a), the gradient at the pooled, biased values. */
    static void deltas(int B, const T* __restrict a, const T* __restrict gz, T* __restrict d) {
        const size_t m = (size_t)B * F * OH * OW;
        for (size_t k = 0; k < m; ++k) d[k] = gz[k] * activation_slope<T, ACT>(a[k]);
    }

    /* Calls fn(lane, y, x, delta) for every conv position of map (n, f) that holds
     * its block's maximum, within the `nblocks` pooling blocks listed in `blocks`
     * (oy*OW + ox).  Usually one position per block does, which the loop over the
     * mask's bits makes a well-predicted branch.  Blocks alternate between lane 0
     * and lane 1 (compile-time constants), so that fn can keep two sets of sums and
     * not wait for each addition to finish before the next. */
    template <typename Fn>
    static inline __attribute__((always_inline)) void for_each_max(
            int n, int f, const T* __restrict d, const uint8_t* __restrict mask,
            const int* __restrict blocks, int nblocks, Fn fn) {
        const size_t base = ((size_t)n * F + f) * OH * OW;
        auto visit = [&](int block, auto lane) {
            const int oy = block / OW, ox = block % OW;
            const T dv = d[base + block];
            for (unsigned bits = mask[base + block]; bits; bits &= bits - 1) {
                const int pos = __builtin_ctz(bits);
                fn(lane, oy * PH + pos / PW, ox * PW + pos % PW, dv);
            }
        };
        int k = 0;
        for (; k + 1 < nblocks; k += 2) {
            visit(blocks[k], std::integral_constant<int, 0>());
            visit(blocks[k + 1], std::integral_constant<int, 1>());
        }
        if (k < nblocks) visit(blocks[k], std::integral_constant<int, 0>());
    }

    /* Every pooling block, as a list for for_each_max. */
    static int all_blocks(int* blocks) {
        for (int k = 0; k < OH * OW; ++k) blocks[k] = k;
        return OH * OW;
    }

    /* The images in a scratch copy with PAD spare values at the end, so that a
     * whole vector can be read from any filter position. */
    static size_t padded_size(int B) { return (size_t)B * C * H * W + PAD; }

    /* The pooling blocks of image xn whose filter windows are not all zero, as a
     * list; nonzero counts come from running sums over the image. */
    static int live_blocks(const T* __restrict xn, int* blocks) {
        int count[H + 1][W + 1];
        for (int xx = 0; xx <= W; ++xx) count[0][xx] = 0;
        for (int y = 0; y < H; ++y) {
            count[y + 1][0] = 0;
            int row = 0;
            for (int xx = 0; xx < W; ++xx) {
                for (int c = 0; c < C; ++c) row += xn[((size_t)c * H + y) * W + xx] != 0;
                count[y + 1][xx + 1] = count[y][xx + 1] + row;
            }
        }
        /* a block's windows cover rows oy*PH .. oy*PH+PH+KH-2, and likewise columns */
        int n = 0;
        for (int oy = 0; oy < OH; ++oy)
            for (int ox = 0; ox < OW; ++ox) {
                const int y0 = oy * PH, y1 = y0 + PH + KH - 1, x0 = ox * PW, x1 = x0 + PW + KW - 1;
                blocks[n] = oy * OW + ox;
                n += count[y1][x1] - count[y0][x1] - count[y1][x0] + count[y0][x0] != 0;
            }
        return n;
    }

    /* Gradients of weights and biases.  Each image's sums are made in T, then added
     * into totals in double: Theano sums a mini-batch in one GEMM, or in double
     * (its bias sums), and sequential float sums over the batch would drift further.
     * total is GRAD_DOUBLES of scratch, xpad padded_size(B) values. */
    static void weight_grads(int B, const T* __restrict x, const T* __restrict d,
                             const uint8_t* __restrict mask, T* __restrict gw,
                             T* __restrict gb, double* __restrict total, T* __restrict xpad) {
        memcpy(xpad, x, sizeof(T) * B * C * H * W);
        memset(xpad + (size_t)B * C * H * W, 0, sizeof(T) * PAD);
        memset(total, 0, sizeof(double) * GRAD_DOUBLES);
        double* btotal = total + (size_t)F * C * KH * KWV * VN;
        for (int n = 0; n < B; ++n) {
            const T* xn = xpad + (size_t)n * C * H * W;
            /* Windows of zeros add nothing: MNIST's background ties every position of
             * a block at 0, and skipping blocks of such windows saves most of the work. */
            int blocks[OH * OW];
            const int nblocks = live_blocks(xn, blocks);
            for (int f = 0; f < F; ++f) {
                const T* dn = d + ((size_t)n * F + f) * OH * OW;
                /* lane-wise partial sums: a single running sum would wait on every addition */
                V partial = V{};
                T bsum = 0;
                for (int k = 0; k + VN <= OH * OW; k += VN) partial += load(dn + k);
                for (int k = OH * OW / VN * VN; k < OH * OW; ++k) bsum += dn[k];
                for (int l = 0; l < VN; ++l) bsum += partial[l];
                btotal[f] += bsum;
                /* one filter's gradient from this image, row by row, kept in registers */
                V g[2][C][KH][KWV];
                for (int lane = 0; lane < 2; ++lane)
                    for (int c = 0; c < C; ++c)
                        for (int i = 0; i < KH; ++i)
                            for (int v = 0; v < KWV; ++v) g[lane][c][i][v] = V{};
                for_each_max(n, f, d, mask, blocks, nblocks, [&](auto lane, int y, int xx, T dv) {
                    for (int c = 0; c < C; ++c)
                        for (int i = 0; i < KH; ++i) {
                            const T* xr = xn + ((size_t)c * H + y + i) * W + xx;
                            for (int v = 0; v < KWV; ++v)
                                g[lane][c][i][v] += dv * load(xr + v * VN);
                        }
                });
                double* gf = total + (size_t)f * C * KH * KWV * VN;
                for (int c = 0; c < C; ++c)
                    for (int i = 0; i < KH; ++i)
                        for (int v = 0; v < KWV; ++v)
                            for (int l = 0; l < VN; ++l)
                                gf[((c * KH + i) * KWV + v) * VN + l] += g[0][c][i][v][l] + g[1][c][i][v][l];
            }
        }
        for (int f = 0; f < F; ++f) gb[f] = (T)btotal[f];
        /* lane j of row (c, i) multiplied input (y+i, x+j): the flipped filter's (KH-1-i, KW-1-j) */
        for (int f = 0; f < F; ++f)
            for (int c = 0; c < C; ++c)
                for (int i = 0; i < KH; ++i)
                    for (int j = 0; j < KW; ++j)
                        gw[(((size_t)f * C + c) * KH + KH - 1 - i) * KW + KW - 1 - j] =
                            (T)total[(((size_t)f * C + c) * KH + i) * KWV * VN + j];
    }

    /* Gradient of the input images; gxpad is padded_size(B) values of scratch, wf
     * FILTER_VECTORS vectors (the flipped filters, each row padded with zeros). */
    static void input_grads(int B, const T* __restrict w, const T* __restrict d,
                            const uint8_t* __restrict mask, T* __restrict gx,
                            T* __restrict gxpad, V* __restrict wflat) {
        V (*wf)[C][KH][KWV] = (V (*)[C][KH][KWV])wflat;
        for (int f = 0; f < F; ++f)
            for (int c = 0; c < C; ++c)
                for (int i = 0; i < KH; ++i)
                    for (int j = 0; j < KWV * VN; ++j)
                        wf[f][c][i][j / VN][j % VN] = j < KW
                            ? w[(((size_t)f * C + c) * KH + KH - 1 - i) * KW + KW - 1 - j] : T(0);
        memset(gxpad, 0, sizeof(T) * padded_size(B));
        int blocks[OH * OW];
        const int nblocks = all_blocks(blocks);
        for (int n = 0; n < B; ++n) {
            T* gn = gxpad + (size_t)n * C * H * W;
            for (int f = 0; f < F; ++f)
                for_each_max(n, f, d, mask, blocks, nblocks, [&](auto, int y, int xx, T dv) {
                    for (int c = 0; c < C; ++c)
                        for (int i = 0; i < KH; ++i) {
                            T* gr = gn + ((size_t)c * H + y + i) * W + xx;
                            for (int v = 0; v < KWV; ++v)
                                store(gr + v * VN, load(gr + v * VN) + dv * wf[f][c][i][v]);
                        }
                });
        }
        memcpy(gx, gxpad, sizeof(T) * B * C * H * W);
    }
};

}  /* namespace n3 */
