/*
 * llama.cpp's one-row matrix-vector product, for bench/matvec-peer.ts: one
 * ggml graph of PRODUCTS independent products y_i = W_i x (W_i [N, K],
 * random, F32 or Q8_0; x one f32 row of K), computed on ggml's CPU backend
 * as llama.cpp computes its graphs (ggml_backend_graph_compute; weights in a
 * CPU backend buffer, as llama.cpp loads them; on x86 ggml repacks neither
 * F32 nor Q8_0, so this is the kernel llama-bench runs). Prints the median
 * µs per graph over CALLS computes (after warm-up) and the weight bytes a
 * graph reads. Written against ggml's public headers only.
 *
 *   gcc -O2 bench/ggml-matvec.c -I$LLAMA/ggml/include -L$LLAMA/build/bin -lggml -lggml-base -lggml-cpu \
 *     -Wl,-rpath,$LLAMA/build/bin -o /tmp/ggml-matvec
 *   /tmp/ggml-matvec K N PRODUCTS f32|q8_0 THREADS CALLS
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

enum { WARMUP_CALLS = 5 };

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int byValue(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Uniform in [-scale, scale): xorshift64, so every run reads the same values. */
static void fillRandom(float *v, size_t n, float scale, uint64_t *state) {
  for (size_t i = 0; i < n; i++) {
    *state ^= *state << 13, *state ^= *state >> 7, *state ^= *state << 17;
    v[i] = scale * ((float)(*state >> 40) / (float)(1 << 23) - 1.0f);
  }
}

static int usage(const char *why) {
  fprintf(stderr, "ggml-matvec: %s\nusage: ggml-matvec K N PRODUCTS f32|q8_0 THREADS CALLS\n", why);
  return 2;
}

int main(int argc, char **argv) {
  if (argc != 7) return usage("expected 6 arguments");
  const int64_t k = atoll(argv[1]), n = atoll(argv[2]);
  const int products = atoi(argv[3]), threads = atoi(argv[5]), calls = atoi(argv[6]);
  const enum ggml_type type = strcmp(argv[4], "q8_0") == 0 ? GGML_TYPE_Q8_0 : strcmp(argv[4], "f32") == 0 ? GGML_TYPE_F32 : GGML_TYPE_COUNT;
  if (k <= 0 || n <= 0 || products <= 0 || threads <= 0 || calls <= 0) return usage("sizes and counts must be positive");
  if (type == GGML_TYPE_COUNT) return usage("weights must be f32 or q8_0");
  if (type == GGML_TYPE_Q8_0 && k % ggml_blck_size(type) != 0) return usage("q8_0 needs K a multiple of 32");

  ggml_backend_t backend = ggml_backend_cpu_init();
  if (!backend) return usage("ggml's CPU backend did not start");
  ggml_backend_cpu_set_n_threads(backend, threads);

  /* Tensor and graph headers only (no_alloc); the data goes to one backend buffer below. */
  struct ggml_init_params params = {(2 * (size_t)products + 1) * ggml_tensor_overhead() + ggml_graph_overhead(), NULL, true};
  struct ggml_context *ctx = ggml_init(params);
  struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, 1); /* [1, K]: ggml lists the fastest dimension first */
  struct ggml_tensor **w = malloc(products * sizeof *w);
  struct ggml_cgraph *graph = ggml_new_graph(ctx);
  for (int i = 0; i < products; i++) {
    w[i] = ggml_new_tensor_2d(ctx, type, k, n); /* [N, K], row-major: each output is one contiguous row */
    ggml_build_forward_expand(graph, ggml_mul_mat(ctx, w[i], x));
  }
  ggml_backend_buffer_t buffer = ggml_backend_alloc_ctx_tensors(ctx, backend);
  if (!buffer) return usage("could not allocate the weights");

  uint64_t state = 0x9e3779b97f4a7c15u;
  float *values = malloc((size_t)(k * n) * sizeof(float));
  void *stored = malloc(ggml_nbytes(w[0]));
  size_t weightBytes = 0;
  for (int i = 0; i < products; i++) {
    fillRandom(values, (size_t)(k * n), 0.05f, &state);
    const void *bytes = values;
    if (type == GGML_TYPE_Q8_0) bytes = stored, ggml_quantize_chunk(type, values, stored, 0, n, k, NULL);
    ggml_backend_tensor_set(w[i], bytes, 0, ggml_nbytes(w[i]));
    weightBytes += ggml_nbytes(w[i]);
  }
  fillRandom(values, (size_t)k, 1.0f, &state);
  ggml_backend_tensor_set(x, values, 0, ggml_nbytes(x));

  double *times = malloc(calls * sizeof *times);
  for (int c = -WARMUP_CALLS; c < calls; c++) {
    const double start = seconds();
    if (ggml_backend_graph_compute(backend, graph) != GGML_STATUS_SUCCESS) return usage("the graph failed to compute");
    if (c >= 0) times[c] = seconds() - start;
  }
  qsort(times, calls, sizeof *times, byValue);
  printf("%.3f %zu\n", times[calls / 2] * 1e6, weightBytes);

  free(times), free(stored), free(values), free(w);
  ggml_backend_buffer_free(buffer);
  ggml_free(ctx);
  ggml_backend_free(backend);
  return 0;
}
