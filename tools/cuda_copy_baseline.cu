// Plain synchronous cudaMemcpy loop over one pinned buffer: the reference the edged.cuda
// copy path is compared with (tools/bench_cuda_copy.py --baseline-binary).
// Build: nvcc -O2 -o cuda_copy_baseline tools/cuda_copy_baseline.cu
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>

#define CHECK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { \
  fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e)); return 1; } } while (0)

static double loop(void* dst, const void* src, size_t n, cudaMemcpyKind kind, int reps) {
  cudaMemcpy(dst, src, n, kind);
  cudaDeviceSynchronize();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) cudaMemcpy(dst, src, n, kind);
  cudaDeviceSynchronize();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return (double)n * reps / s / 1e9;
}

int main(int argc, char** argv) {
  size_t n = (size_t)(argc > 1 ? atoi(argv[1]) : 64) << 20;
  int reps = argc > 2 ? atoi(argv[2]) : 50;
  void *host, *dev;
  CHECK(cudaHostAlloc(&host, n, cudaHostAllocPortable));
  CHECK(cudaMalloc(&dev, n));
  memset(host, 0x5A, n);
  double h2d = loop(dev, host, n, cudaMemcpyHostToDevice, reps);
  double d2h = loop(host, dev, n, cudaMemcpyDeviceToHost, reps);
  printf("{\"h2d_gbps\": %.3f, \"d2h_gbps\": %.3f}\n", h2d, d2h);
  cudaFree(dev);
  cudaFreeHost(host);
  return 0;
}
