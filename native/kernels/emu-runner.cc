// Runs one kernel of native/kernels/fused.cu on the CPU through the SIMT emulator (simt-emu.h), with
// the launch configuration the addon uses (launch.h). Built and driven by test/fused/kernels-emu.test.ts:
//   emu-runner DIR      reads DIR/job.txt and the input files, writes the output files (raw bytes)
// Jobs (one line):
//   ln T R W O M D rowsPerBatch xsB xsT hasR rsB rsT hasW hasB eps [xOff rOff]
//        x.bin (T), r.bin (R), w.bin b.bin (W) -> h.bin (T, with hasR), y.bin (O), mean.bin rstd.bin (float)
//   lnb T R W O M D hasW hasB hasGh hasDr sms off
//        src.bin (T), mean.bin rstd.bin (float), w.bin (W), gy.bin (O), gh.bin (T) -> dsrc.bin (T), dr.bin (R, with
//        hasDr), dwpart.bin (with hasW), dbpart.bin (with hasB): float [grid, D]; grid.txt. sms: the launch's SM
//        count (0: no bound); off: src, gy, gh and the outputs start that many elements into their buffers.
//        Optionally after off: rowsPerBatch ssB ssT osB osT (the row layouts), then ghOff (gh alone that many
//        elements further in).
//   geluBwd T rows D sms      g.bin pre.bin (T) -> out.bin (T), dbpart.bin (float [grid, D]); grid.txt
//   qkvBwd T rows D sms       dq.bin dk.bin dv.bin (T, [rows, D]) -> out.bin (T, [rows, 3, D]), dbpart.bin (float [grid, 3D]); grid.txt
// xOff, rOff, off: x, r, h and g start that many elements into their files (misaligned views).
// Every job also writes paths.txt: which code paths the kernel took ("vector", "scalar"; SEMAIM_TRACE_PATH).
//   targets B C H W P K normPix   img.bin weights.bin (float) -> out.bin (float)
//   convert n      in.bin (n floats) -> f16.bin, bf16.bin (fromFloat, raw bits); halves.bin: toFloat of all 65536 halves
#include "simt-emu.h"
#include "fused.cu"
#include "launch.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>

namespace {

using Bytes = std::vector<unsigned char>;
using semaim_launch::Launch;

Bytes readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}
void writeFile(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}
size_t sizeOf(const std::string& code) { return code == "f32" ? 4 : 2; }
// The bytes of a vector of plain values (floats, raw 16-bit patterns), as written to a file.
template <typename V>
Bytes rawBytes(const V& v) {
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  return Bytes(p, p + v.size() * sizeof(v[0]));
}

using LayerNormFn = void (*)(const Launch&, const void*, long long, long long, const void*, long long, long long, long long, const void*,
                             const void*, void*, void*, float*, float*, long long, int, float);
const std::map<std::string, LayerNormFn>& layerNormKernels() {
#define SEMAIM_EMU_LN(T, R, W, O)                                                                                                    \
  {semaim_launch::layerNormName(#T, #R, #W, #O),                                                                                        \
   [](const Launch& l, const void* x, long long xsB, long long xsT, const void* r, long long rsB, long long rsT, long long rpb,     \
      const void* w, const void* b, void* h, void* y, float* mean, float* rstd, long long M, int D, float eps) {                    \
     simt_emu::launch(semaim_layer_norm_##T##_##R##_##W##_##O, l.grid, l.block, l.sharedBytes, static_cast<const semaim_kernels::T*>(x), \
                      xsB, xsT, static_cast<const semaim_kernels::R*>(r), rsB, rsT, rpb, static_cast<const semaim_kernels::W*>(w), \
                      static_cast<const semaim_kernels::W*>(b), static_cast<semaim_kernels::T*>(h),                                 \
                      static_cast<semaim_kernels::O*>(y), mean, rstd, M, D, eps);                                                   \
   }},
  static const std::map<std::string, LayerNormFn> table{SEMAIM_FOR_EACH_LAYER_NORM(SEMAIM_EMU_LN)};
#undef SEMAIM_EMU_LN
  return table;
}

// Rows as the kernel takes them: src's layout (sB, sT), the rows per batch, gh/dsrc/dr's layout (sB, sT).
struct RowLayouts {
  long long ssB, ssT, rowsPerBatch, osB, osT;
};
using LayerNormBwdFn = void (*)(const Launch&, const void*, const RowLayouts&, const float*, const float*, const void*, const void*,
                                const void*, void*, void*, float*, float*, long long, int);
const std::map<std::string, LayerNormBwdFn>& layerNormBackwardKernels() {
#define SEMAIM_EMU_LNB(T, R, W, O)                                                                                                   \
  {semaim_launch::layerNormBackwardName(#T, #R, #W, #O),                                                                            \
   [](const Launch& l, const void* src, const RowLayouts& rl, const float* mean, const float* rstd, const void* w, const void* gy,    \
      const void* gh, void* dsrc, void* dr, float* dwPart, float* dbPart, long long M, int D) {                                      \
     simt_emu::launch(semaim_layer_norm_bwd_##T##_##R##_##W##_##O, l.grid, l.block, l.sharedBytes,                                   \
                      static_cast<const semaim_kernels::T*>(src), rl.ssB, rl.ssT, rl.rowsPerBatch, mean, rstd,                     \
                      static_cast<const semaim_kernels::W*>(w), static_cast<const semaim_kernels::O*>(gy),                         \
                      static_cast<const semaim_kernels::T*>(gh), static_cast<semaim_kernels::T*>(dsrc),                            \
                      static_cast<semaim_kernels::R*>(dr), rl.osB, rl.osT, dwPart, dbPart, M, D);                                  \
   }},
  static const std::map<std::string, LayerNormBwdFn> table{SEMAIM_FOR_EACH_LAYER_NORM(SEMAIM_EMU_LNB)};
#undef SEMAIM_EMU_LNB
  return table;
}

// The column-sum kernels (GELU's backward, q/k/v into qkv): inputs as the kernel takes them, then out and
// the block sums.
using ColumnSumFn = void (*)(const Launch&, const std::vector<Bytes>& inputs, void* out, float* dbPart, long long rows, int D);
const std::map<std::string, ColumnSumFn>& columnSumKernels() {
#define SEMAIM_EMU_COLUMN_SUMS(T)                                                                                                    \
  {semaim_launch::geluBackwardBiasName(#T),                                                                                         \
   [](const Launch& l, const std::vector<Bytes>& in, void* out, float* dbPart, long long rows, int D) {                             \
     using S = semaim_kernels::T;                                                                                                   \
     simt_emu::launch(semaim_gelu_bwd_bias_##T, l.grid, l.block, l.sharedBytes, reinterpret_cast<const S*>(in.at(0).data()),       \
                      reinterpret_cast<const S*>(in.at(1).data()), static_cast<S*>(out), dbPart, rows, D);                         \
   }},                                                                                                                              \
      {semaim_launch::qkvBackwardBiasName(#T), [](const Launch& l, const std::vector<Bytes>& in, void* out, float* dbPart, long long rows, int D) { \
         using S = semaim_kernels::T;                                                                                               \
         simt_emu::launch(semaim_qkv_bwd_bias_##T, l.grid, l.block, l.sharedBytes, reinterpret_cast<const S*>(in.at(0).data()),     \
                          reinterpret_cast<const S*>(in.at(1).data()), reinterpret_cast<const S*>(in.at(2).data()), static_cast<S*>(out), \
                          dbPart, rows, D);                                                                                         \
       }},
  static const std::map<std::string, ColumnSumFn> table{SEMAIM_FOR_EACH_STORAGE(SEMAIM_EMU_COLUMN_SUMS)};
#undef SEMAIM_EMU_COLUMN_SUMS
  return table;
}
static_assert(semaim_launch::kColumnSumThreads == semaim_kernels::kColumnSumThreads &&
                  semaim_launch::kColumnSumMaxWidth == semaim_kernels::kColumnSumMaxWidth,
              "launch.h and fused.cu disagree about the column-sum kernels' launch");

void runLayerNorm(const std::string& dir, std::istringstream& in) {
  std::string T, R, W, O;
  long long M, rowsPerBatch, xsB, xsT, rsB, rsT;
  int D, hasR, hasW, hasB;
  float eps;
  in >> T >> R >> W >> O >> M >> D >> rowsPerBatch >> xsB >> xsT >> hasR >> rsB >> rsT >> hasW >> hasB >> eps;
  if (!in) throw std::runtime_error("ln: bad job line");
  long long xOff = 0, rOff = 0;
  if (!(in >> xOff >> rOff)) xOff = rOff = 0;
  const auto it = layerNormKernels().find(semaim_launch::layerNormName(T, R, W, O));
  if (it == layerNormKernels().end()) throw std::runtime_error("ln: no kernel for " + T + " " + R + " " + W + " " + O);
  const Bytes x = readFile(dir + "/x.bin");
  const Bytes r = hasR ? readFile(dir + "/r.bin") : Bytes();
  const Bytes w = hasW ? readFile(dir + "/w.bin") : Bytes();
  const Bytes b = hasB ? readFile(dir + "/b.bin") : Bytes();
  Bytes h(hasR ? static_cast<size_t>(M) * D * sizeOf(T) : 0);
  Bytes y(static_cast<size_t>(M) * D * sizeOf(O));
  std::vector<float> mean(M), rstd(M);
  it->second(semaim_launch::layerNorm(M), x.data() + xOff * sizeOf(T), xsB, xsT, hasR ? r.data() + rOff * sizeOf(R) : nullptr, rsB, rsT, rowsPerBatch, hasW ? w.data() : nullptr,
             hasB ? b.data() : nullptr, hasR ? h.data() : nullptr, y.data(), mean.data(), rstd.data(), M, D, eps);
  if (hasR) writeFile(dir + "/h.bin", h);
  writeFile(dir + "/y.bin", y);
  writeFile(dir + "/mean.bin", Bytes(reinterpret_cast<unsigned char*>(mean.data()), reinterpret_cast<unsigned char*>(mean.data() + M)));
  writeFile(dir + "/rstd.bin", Bytes(reinterpret_cast<unsigned char*>(rstd.data()), reinterpret_cast<unsigned char*>(rstd.data() + M)));
}

void runLayerNormBackward(const std::string& dir, std::istringstream& in) {
  std::string T, R, W, O;
  long long M, off;
  int D, hasW, hasB, hasGh, hasDr, sms;
  in >> T >> R >> W >> O >> M >> D >> hasW >> hasB >> hasGh >> hasDr >> sms >> off;
  if (!in) throw std::runtime_error("lnb: bad job line");
  // Optionally the row layouts (src.bin, and gh.bin/dsrc/dr, in elements); else contiguous [M, D] rows.
  const RowLayouts contiguous{0, D, M, 0, D};
  RowLayouts rl = contiguous;
  if (!(in >> rl.rowsPerBatch >> rl.ssB >> rl.ssT >> rl.osB >> rl.osT)) rl = contiguous;  // a partial read leaves fields set
  long long ghOff;
  if (!(in >> ghOff)) ghOff = 0;
  if (rl.rowsPerBatch <= 0 || M % rl.rowsPerBatch) throw std::runtime_error("lnb: rows per batch must divide the rows");
  const auto it = layerNormBackwardKernels().find(semaim_launch::layerNormBackwardName(T, R, W, O));
  if (it == layerNormBackwardKernels().end()) throw std::runtime_error("lnb: no kernel for " + T + " " + R + " " + W + " " + O);
  const Bytes src = readFile(dir + "/src.bin");
  const Bytes mean = readFile(dir + "/mean.bin");
  const Bytes rstd = readFile(dir + "/rstd.bin");
  const Bytes w = hasW ? readFile(dir + "/w.bin") : Bytes();
  const Bytes gy = readFile(dir + "/gy.bin");
  const Bytes gh = hasGh ? readFile(dir + "/gh.bin") : Bytes();
  // The outputs' buffers span the out layout's rows (zero where no row is: the tests check that it stays so).
  const size_t n = static_cast<size_t>((M / rl.rowsPerBatch - 1) * rl.osB + (rl.rowsPerBatch - 1) * rl.osT + D);
  Bytes dsrc((n + off) * sizeOf(T));
  Bytes dr(hasDr ? (n + off) * sizeOf(R) : 0);
  const Launch l = semaim_launch::layerNormBackward(M, D, sms);
  std::vector<float> dwPart(static_cast<size_t>(l.grid) * D, NAN), dbPart(static_cast<size_t>(l.grid) * D, NAN);
  it->second(l, src.data() + off * sizeOf(T), rl, reinterpret_cast<const float*>(mean.data()), reinterpret_cast<const float*>(rstd.data()),
             hasW ? w.data() : nullptr, gy.data() + off * sizeOf(O), hasGh ? gh.data() + (off + ghOff) * sizeOf(T) : nullptr, dsrc.data() + off * sizeOf(T),
             hasDr ? dr.data() + off * sizeOf(R) : nullptr, hasW ? dwPart.data() : nullptr, hasB ? dbPart.data() : nullptr, M, D);
  writeFile(dir + "/dsrc.bin", Bytes(dsrc.begin() + static_cast<long>(off * sizeOf(T)), dsrc.end()));
  if (hasDr) writeFile(dir + "/dr.bin", Bytes(dr.begin() + static_cast<long>(off * sizeOf(R)), dr.end()));
  if (hasW) writeFile(dir + "/dwpart.bin", rawBytes(dwPart));
  if (hasB) writeFile(dir + "/dbpart.bin", rawBytes(dbPart));
  const std::string grid = std::to_string(l.grid);
  writeFile(dir + "/grid.txt", Bytes(grid.begin(), grid.end()));
}

// geluBwd: g.bin pre.bin -> out.bin [rows, D]; qkvBwd: dq.bin dk.bin dv.bin -> out.bin [rows, 3, D].
void runColumnSums(const std::string& dir, std::istringstream& in, bool qkv) {
  std::string T;
  long long rows;
  int D, sms;
  in >> T >> rows >> D >> sms;
  if (!in) throw std::runtime_error("column sums: bad job line");
  const std::string name = qkv ? semaim_launch::qkvBackwardBiasName(T) : semaim_launch::geluBackwardBiasName(T);
  const auto it = columnSumKernels().find(name);
  if (it == columnSumKernels().end()) throw std::runtime_error("no kernel " + name);
  std::vector<Bytes> inputs;
  for (const char* f : qkv ? std::vector<const char*>{"dq", "dk", "dv"} : std::vector<const char*>{"g", "pre"}) inputs.push_back(readFile(dir + "/" + f + ".bin"));
  const int width = qkv ? 3 * D : D;
  Bytes out(static_cast<size_t>(rows) * width * sizeOf(T));
  const Launch l = semaim_launch::columnSums(rows, sms);
  std::vector<float> dbPart(static_cast<size_t>(l.grid) * width, NAN);
  it->second(l, inputs, out.data(), dbPart.data(), rows, D);
  writeFile(dir + "/out.bin", out);
  writeFile(dir + "/dbpart.bin", rawBytes(dbPart));
  const std::string grid = std::to_string(l.grid);
  writeFile(dir + "/grid.txt", Bytes(grid.begin(), grid.end()));
}

void runConvert(const std::string& dir, std::istringstream& in) {
  long long n;
  in >> n;
  if (!in) throw std::runtime_error("convert: bad job line");
  const Bytes src = readFile(dir + "/in.bin");
  if (src.size() != static_cast<size_t>(n) * 4) throw std::runtime_error("convert: in.bin has the wrong size");
  const float* f = reinterpret_cast<const float*>(src.data());
  std::vector<unsigned short> f16(n), bf16(n);
  for (long long i = 0; i < n; ++i) {
    f16[i] = semaim_kernels::fromFloat<semaim_kernels::f16>(f[i]).bits;
    bf16[i] = semaim_kernels::fromFloat<semaim_kernels::bf16>(f[i]).bits;
  }
  std::vector<float> halves(65536);
  for (unsigned i = 0; i < 65536; ++i) halves[i] = semaim_kernels::toFloat(semaim_kernels::f16{static_cast<unsigned short>(i)});
  writeFile(dir + "/f16.bin", rawBytes(f16));
  writeFile(dir + "/bf16.bin", rawBytes(bf16));
  writeFile(dir + "/halves.bin", rawBytes(halves));
}

void runTargets(const std::string& dir, std::istringstream& in) {
  long long B;
  int C, H, W, P, K, norm;
  in >> B >> C >> H >> W >> P >> K >> norm;
  if (!in) throw std::runtime_error("targets: bad job line");
  const Bytes img = readFile(dir + "/img.bin");
  const Bytes weights = K > 0 ? readFile(dir + "/weights.bin") : Bytes(4);
  Bytes out(static_cast<size_t>(B) * H * W * C * sizeof(float));
  const Launch l = semaim_launch::pixelTargets(B, C, H, W, P, K);
  simt_emu::launch(semaim_pixel_targets_f32, l.grid, l.block, l.sharedBytes, reinterpret_cast<const float*>(img.data()),
                   reinterpret_cast<const float*>(weights.data()), reinterpret_cast<float*>(out.data()), C, H, W, P, K, norm);
  writeFile(dir + "/out.bin", out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: emu-runner DIR\n";
    return 2;
  }
  try {
    // The launch header's list of LayerNorm kernels must be the source's.
    size_t listed = 0;
    for (const char* t : {"f32", "bf16", "f16"})
      for (const char* r : {"f32", "bf16", "f16"})
        for (const char* w : {"f32", "bf16", "f16"})
          for (const char* o : {"f32", "bf16", "f16"}) {
            const bool exists = semaim_launch::layerNormKernelExists(t, r, w, o);
            listed += exists;
            if (exists != (layerNormKernels().count(semaim_launch::layerNormName(t, r, w, o)) == 1))
              throw std::logic_error(std::string("launch.h and fused.cu disagree about ") + semaim_launch::layerNormName(t, r, w, o));
            if (exists != (layerNormBackwardKernels().count(semaim_launch::layerNormBackwardName(t, r, w, o)) == 1))
              throw std::logic_error(std::string("launch.h and fused.cu disagree about ") + semaim_launch::layerNormBackwardName(t, r, w, o));
          }
    if (listed != layerNormKernels().size()) throw std::logic_error("launch.h lists fewer LayerNorm kernels than fused.cu defines");
    if (layerNormBackwardKernels().size() != layerNormKernels().size()) throw std::logic_error("fused.cu's LayerNorm backward kernels differ from its forward ones");
    const std::string dir = argv[1];
    const Bytes job = readFile(dir + "/job.txt");
    std::istringstream in(std::string(job.begin(), job.end()));
    std::string kind;
    in >> kind;
    if (kind == "ln") runLayerNorm(dir, in);
    else if (kind == "lnb") runLayerNormBackward(dir, in);
    else if (kind == "geluBwd" || kind == "qkvBwd") runColumnSums(dir, in, kind == "qkvBwd");
    else if (kind == "targets") runTargets(dir, in);
    else if (kind == "convert") runConvert(dir, in);
    else throw std::runtime_error("unknown job '" + kind + "'");
    const unsigned paths = simt_emu::paths_.load();
    const std::string taken = std::string(paths & 2u ? "vector " : "") + (paths & 4u ? "scalar" : "");
    writeFile(dir + "/paths.txt", Bytes(taken.begin(), taken.end()));
  } catch (const std::exception& e) {
    std::cerr << "emu-runner: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
