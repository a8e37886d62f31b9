// Lesson 11 - NF4: the 4-bit weights of QLoRA (Dettmers et al. 2023), stored byte for byte as
// bitsandbytes stores them.
//
// Shapes: n weights (any shape, flattened), blocks of b = 64 weights, nb = ceil(n / b) blocks.
//
// A trained weight matrix is close to normally distributed. NF4 ("4-bit NormalFloat") spends its
// 16 codes where a normal distribution puts its mass: the code values are quantiles of N(0, 1),
// rescaled to [-1, 1], with an exact 0 (7 negative codes, 0, 8 positive ones). A weight is stored
// as the index of its nearest code after dividing its block by the block's largest |w|:
//
//     absmax[j] = max |w| over block j                       (nb,)  fp32
//     idx       = nearest code to clamp(w / absmax[j], -1, 1) (n,)   4 bits each
//     w'        = code[idx] * absmax[j]                       the dequantised weight
//
// "Nearest" is bitsandbytes' bucketize over the midpoints between adjacent codes: a value exactly
// on a midpoint goes to the *lower* code (torch.bucketize with right=False; the CUDA kernel's
// "x > midpoint" tests agree). Two indices share a byte, element 2k in the high nibble:
//
//     packed[k] = idx[2k] << 4 | idx[2k + 1]          (an odd count is padded with one 0 index)
//
// Double quantisation (QLoRA section 3) stores the absmax values themselves in 8 bits: subtract
// their mean (the offset), then quantise blockwise (256 per block, an fp32 absmax each) to the
// nearest of bitsandbytes' 256-value "dynamic" map (create_dynamic_map: a sign, a run of zeros that
// sets the decimal exponent, then a linear fraction; not IEEE FP8). Bytes per weight:
//
//     plain   0.5 + 4 / 64                      = 0.5625
//     double  0.5 + 1 / 64 + 4 / (64 * 256)     ~ 0.5159     (fp32: 4, so 7.75x smaller)
//
// Reference: bitsandbytes/functional.py (get_4bit_type, create_dynamic_map, quantize_4bit,
// dequantize_4bit) and backends/default/ops.py (the quantize_4bit, quantize_blockwise kernels).
// Golden (worked from the table and the tie rule above): x = [0.1, -0.5, 1.0, 0.3] -> absmax 1.0, idx [8, 2, 15, 11],
// bytes [0x82, 0xFB], dequantised [0.0795803, -0.5250731, 1.0, 0.3379152].
#pragma once

#include <llm/common/todo.h>
#include <llm/model/linear.h>

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

namespace llm {

// bitsandbytes' NF4 table (get_4bit_type("nf4"), the same in csrc/kernels.cu), index 0b0000 .. 0b1111.
inline torch::Tensor nf4_code() {
  static const std::array<float, 16> values = {-1.0f,
                                               -0.6961928009986877f,
                                               -0.5250730514526367f,
                                               -0.39491748809814453f,
                                               -0.28444138169288635f,
                                               -0.18477343022823334f,
                                               -0.09105003625154495f,
                                               0.0f,
                                               0.07958029955625534f,
                                               0.16093020141124725f,
                                               0.24611230194568634f,
                                               0.33791524171829224f,
                                               0.44070982933044434f,
                                               0.5626170039176941f,
                                               0.7229568362236023f,
                                               1.0f};
  return torch::tensor(std::vector<float>(values.begin(), values.end()), torch::kFloat32);
}

// bitsandbytes' 8-bit "dynamic" map, create_dynamic_map(signed=True, max_exponent_bits=7,
// total_bits=8): for exponent e = 0..6, the 2^e midpoints of linspace(0.1, 1, 2^e + 1) times
// 10^(e - 6), with both signs (254 values), then 0 and 1; sorted. Computed in fp32 as there.
inline torch::Tensor dynamic_map() {
  std::vector<float> data;
  for (int64_t e = 0; e < 7; ++e) {
    auto bounds = torch::linspace(0.1, 1.0, (int64_t{1} << e) + 1, torch::kFloat32);
    auto means = (bounds.slice(0, 0, -1) + bounds.slice(0, 1)) / 2.0;  // fp32
    auto scale = std::pow(10.0, static_cast<double>(e - 6));
    auto pos = (means * scale).contiguous(), neg = (means * -scale).contiguous();
    for (int64_t i = 0; i < pos.numel(); ++i) data.push_back(pos.data_ptr<float>()[i]);
    for (int64_t i = 0; i < neg.numel(); ++i) data.push_back(neg.data_ptr<float>()[i]);
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  return torch::tensor(data, torch::kFloat32);  // (256,)
}

// Nearest code by bucketize over the midpoints of a sorted code: ties go to the lower code.
// scaled (n,) fp32 in [-1, 1], code (K,) sorted -> (n,) int64 indices into code.
inline torch::Tensor nearest_code(const torch::Tensor& scaled, const torch::Tensor& code) {
  auto midpoints = (code.slice(0, 0, -1) + code.slice(0, 1)) / 2;  // (K - 1,) fp32, as bitsandbytes
  return torch::bucketize(scaled, midpoints, /*out_int32=*/false, /*right=*/false);
}

// One absmax per block of `blocksize` (the last block may be shorter and gets its own), and the
// values scaled into [-1, 1] by it. x (n,) fp32 -> scaled (n,), absmax (nb,).
struct BlockScaled {
  torch::Tensor scaled, absmax;
};

inline BlockScaled scale_blocks(const torch::Tensor& x, int64_t blocksize) {
  // 1. Flatten x to fp32; full = n - n % blocksize values form (full / blocksize, blocksize) blocks.
  // 2. absmax = max |x| per full block; scaled = clamp(x * (1 / max(absmax, 1e-38)), -1, 1)
  //    (bitsandbytes multiplies by the reciprocal; an all-zero block keeps absmax 0).
  // 3. A shorter last block: am = max(max |x_tail|, 1e-38), scaled = clamp(x_tail / am, -1, 1),
  //    absmax gets am appended (bitsandbytes divides here, and stores the clamped value).
  // BEGIN SOLUTION: scale_blocks(): an absmax per block and the block divided by it
  TORCH_CHECK(blocksize > 0, "scale_blocks: blocksize must be positive, got ", blocksize);
  auto flat = x.reshape(-1).to(torch::kFloat32);
  const int64_t n = flat.numel(), rem = n % blocksize, full = n - rem;
  std::vector<torch::Tensor> scaled, absmax;
  if (full > 0) {
    auto blocks = flat.slice(0, 0, full).view({full / blocksize, blocksize});
    auto am = std::get<0>(blocks.abs().max(1));  // (full / blocksize,)
    scaled.push_back(torch::clamp(blocks * (1.0 / am.clamp_min(1e-38)).unsqueeze(1), -1, 1).reshape(-1));
    absmax.push_back(am);
  }
  if (rem > 0) {
    auto tail = flat.slice(0, full);
    auto am = tail.abs().max().clamp_min(1e-38);
    scaled.push_back(torch::clamp(tail / am, -1, 1));
    absmax.push_back(am.unsqueeze(0));
  }
  if (n == 0) return {flat, torch::empty({0}, torch::kFloat32)};
  return {torch::cat(scaled), torch::cat(absmax)};
  // END SOLUTION
}

// idx (n,) values 0..15 -> (ceil(n / 2),) uint8, element 2k in the high nibble (odd n: padded with 0).
inline torch::Tensor pack_nibbles(const torch::Tensor& idx) {
  // BEGIN SOLUTION: pack_nibbles(): two 4-bit indices per byte, the even element high
  auto q = idx.reshape(-1).to(torch::kUInt8);
  if (q.numel() % 2) q = torch::cat({q, torch::zeros({1}, q.options())});
  return torch::bitwise_or(torch::bitwise_left_shift(q.slice(0, 0, c10::nullopt, 2), 4),
                           q.slice(0, 1, c10::nullopt, 2));
  // END SOLUTION
}

// packed (m,) uint8 -> the first n indices (n,) int64: byte >> 4 for element 2k, byte & 0xF for 2k + 1.
inline torch::Tensor unpack_nibbles(const torch::Tensor& packed, int64_t n) {
  // BEGIN SOLUTION: unpack_nibbles(): the high nibble, then the low one, of each byte
  auto p = packed.reshape(-1).to(torch::kLong);
  auto both = torch::stack({torch::bitwise_right_shift(p, 4), torch::bitwise_and(p, 0xF)}, 1);  // (m, 2)
  TORCH_CHECK(n <= both.numel(), "unpack_nibbles: ", packed.numel(), " bytes hold ", both.numel(),
              " indices, asked for ", n);
  return both.reshape(-1).slice(0, 0, n);
  // END SOLUTION
}

// 8-bit blockwise quantisation (bitsandbytes quantize_blockwise): the nearest of `code`'s 256
// values to each value scaled by its block's absmax.
struct Blockwise8bit {
  torch::Tensor q;       // (n,) uint8 indices into code
  torch::Tensor absmax;  // (nb,) fp32
  int64_t blocksize = 256;
};

inline Blockwise8bit quantize_blockwise(const torch::Tensor& x, const torch::Tensor& code, int64_t blocksize = 256) {
  // BEGIN SOLUTION: quantize_blockwise(): scale each block by its absmax, then the nearest code
  auto [scaled, absmax] = scale_blocks(x, blocksize);
  return {nearest_code(scaled, code).to(torch::kUInt8), absmax, blocksize};
  // END SOLUTION
}

inline torch::Tensor dequantize_blockwise(const Blockwise8bit& b, const torch::Tensor& code) {
  // BEGIN SOLUTION: dequantize_blockwise(): code[q] times its block's absmax
  auto values = code.index_select(0, b.q.to(torch::kLong));  // (n,)
  auto block = torch::arange(values.numel(), torch::kLong).div(b.blocksize, "floor");
  return values * b.absmax.index_select(0, block);
  // END SOLUTION
}

struct Nf4Options {
  int64_t blocksize = 64;    // bitsandbytes' default for quantize_4bit (32 .. 4096 allowed)
  bool double_quant = true;  // QLoRA's bnb_4bit_use_double_quant (compress_statistics)
  int64_t absmax_blocksize = 256;
};

// A tensor in NF4: everything needed to give it back.
struct Nf4Tensor {
  std::vector<int64_t> shape;
  int64_t blocksize = 64;
  torch::Tensor packed;   // (ceil(n / 2),) uint8
  torch::Tensor absmax;   // (nb,) fp32 - without double quantisation
  Blockwise8bit absmax8;  // with double quantisation: the absmax values minus offset, in 8 bits
  double offset = 0;      // the mean of the absmax values
  bool double_quant = false;

  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  // Storage in bytes: the packed codes and the block statistics.
  int64_t bytes() const {
    if (!double_quant) return packed.numel() + 4 * absmax.numel();
    return packed.numel() + absmax8.q.numel() + 4 * absmax8.absmax.numel() + 4;  // + the fp32 offset
  }
};

inline Nf4Tensor quantize_nf4(const torch::Tensor& w, const Nf4Options& options = {}) {
  // 1. scale_blocks(w, blocksize) -> scaled, absmax.
  // 2. idx = nearest_code(scaled, nf4_code()); packed = pack_nibbles(idx).
  // 3. Double quantisation: offset = mean(absmax); absmax8 = quantize_blockwise(absmax - offset,
  //    dynamic_map(), absmax_blocksize). Otherwise keep absmax in fp32.
  TORCH_CHECK(options.blocksize >= 2 && options.blocksize % 2 == 0,
              "quantize_nf4: blocksize must be even and >= 2, got ", options.blocksize);
  TORCH_CHECK(w.is_floating_point(), "quantize_nf4: expected a floating-point tensor, got ", w.scalar_type());
  // BEGIN SOLUTION: quantize_nf4(): block absmax, nearest NF4 code, two per byte, absmax in 8 bits
  Nf4Tensor t;
  t.shape = w.sizes().vec();
  t.blocksize = options.blocksize;
  t.double_quant = options.double_quant;
  auto [scaled, absmax] = scale_blocks(w.detach(), options.blocksize);
  t.packed = pack_nibbles(nearest_code(scaled, nf4_code()));
  if (options.double_quant) {
    t.offset = absmax.mean().item<double>();
    t.absmax8 = quantize_blockwise(absmax - t.offset, dynamic_map(), options.absmax_blocksize);
  } else {
    t.absmax = absmax;
  }
  return t;
  // END SOLUTION
}

// The weights back, fp32 (bitsandbytes computes in fp32 and casts at the end), in the original shape.
inline torch::Tensor dequantize_nf4(const Nf4Tensor& t) {
  // 1. absmax = t.absmax, or dequantize_blockwise(t.absmax8, dynamic_map()) + t.offset.
  // 2. values = nf4_code()[unpack_nibbles(packed, n)] * absmax[i / blocksize]; reshape to t.shape.
  // BEGIN SOLUTION: dequantize_nf4(): the absmax values back, then code[idx] times its block's absmax
  auto absmax = t.double_quant ? dequantize_blockwise(t.absmax8, dynamic_map()) + t.offset : t.absmax;
  const int64_t n = t.numel();
  auto values = nf4_code().index_select(0, unpack_nibbles(t.packed, n));  // (n,)
  auto block = torch::arange(n, torch::kLong).div(t.blocksize, "floor");
  return (values * absmax.index_select(0, block)).view(t.shape);
  // END SOLUTION
}

// A Linear whose weight lives in NF4: the fp32 weight is freed, and every forward dequantises it
// on the fly (QLoRA's "storage type NF4, compute type bf16/fp32"). It is frozen: QLoRA trains only
// the LoRA branch on top (lora.h). Memory falls ~7.75x for the weight; the price is a dequantise
// per forward, a few percent of a matmul's time.
struct Nf4LinearAdapter : LinearAdapter {
  Nf4Tensor weight;

  torch::Tensor forward(const torch::Tensor& x, LinearImpl& layer) override {
    // BEGIN SOLUTION: Nf4LinearAdapter::forward(): dequantise, then x W^T
    auto w = dequantize_nf4(weight);  // (out, in) fp32
    return torch::linear(x, x.scalar_type() == torch::kFloat32 ? w : w.to(x.scalar_type()));
    // END SOLUTION
  }
};

// Quantises a Linear in place: its weight goes to NF4, the fp32 tensor is released (set_() leaves
// an empty tensor under the same registered name, so the module tree is unchanged).
inline void quantize_linear_nf4(LinearImpl& layer, const Nf4Options& options = {}) {
  TORCH_CHECK(!layer.adapter, "quantize_linear_nf4: this layer already has an adapter; quantise before adding LoRA");
  auto adapter = std::make_shared<Nf4LinearAdapter>();
  adapter->weight = quantize_nf4(layer.weight, options);
  torch::NoGradGuard no_grad;
  layer.weight.requires_grad_(false);
  layer.weight.set_();  // frees the fp32 storage
  layer.adapter = adapter;
}

}  // namespace llm
