// Lesson 02 - rotary position embedding (RoPE), as Llama uses it.
//
// Shapes: B batch, H heads, T time, D head dimension (even), L the longest position cached.
//
// RoPE (Su et al. 2021, "RoFormer") encodes position by *rotating* query and key vectors instead of
// adding a position vector to the input. The D channels are split into D/2 pairs; pair i at
// position t is rotated by the angle t * w_i, with frequencies
//
//     w_i = theta^(-2i / D),   i = 0 .. D/2 - 1,   theta = 10000 (Llama 1-2)
//
// so the first pairs spin fast (fine position) and the last ones slowly (coarse position):
//
//     [y_a]   [cos(t w_i)  -sin(t w_i)] [x_a]
//     [y_b] = [sin(t w_i)   cos(t w_i)] [x_b]
//
// Why it works: a rotation keeps norms, and the dot product of a query rotated by m w_i with a key
// rotated by n w_i depends only on (m - n) w_i. Attention scores therefore see *relative* position.
//
// Which channels form a pair is a convention:
//   kHalf         pair i = (x[i], x[i + D/2])      Hugging Face Llama's "rotate_half"; the default here
//   kInterleaved  pair i = (x[2i], x[2i + 1])      the RoFormer paper and Meta's original Llama code
// The two are the same rotation applied to permuted channels: that is why Hugging Face permutes the
// rows of q_proj/k_proj when it converts Meta's checkpoints. A model is only consistent with itself.
//
// For decoding with a KV cache (lesson 05) a new token sits at position `offset`, not 0: apply()
// takes that offset and uses the angles of positions offset .. offset + T - 1. Packed training
// (lesson 06) gives every token its own position instead: apply() also takes a tensor of positions.
//
// Longer contexts: a model pretrained on 8,192 positions has never seen the slowest pairs turn
// further than 8,192 w_i. Llama 3.1 stretches RoPE to 128K by *slowing the slow pairs down*
// (rope_type "llama3"; Meta's llama-models, apply_scaling; transformers' modeling_rope_utils.py,
// _compute_llama3_parameters). With the pair's wavelength lambda_i = 2 pi / w_i and L the original
// context (original_max_position_embeddings):
//
//     lambda_i < L / high_freq_factor     high frequency: w_i unchanged (local order stays sharp)
//     lambda_i > L / low_freq_factor      low frequency:  w_i / factor  (stretched to the new length)
//     in between                          s = (L / lambda_i - low_freq_factor) / (high_freq_factor - low_freq_factor)
//                                         w_i' = (1 - s) w_i / factor + s w_i   (a smooth blend)
//
// Llama 3.1 and 3.2 use factor 8 (3.2 1B/3B: 32), low_freq_factor 1, high_freq_factor 4, L 8192.
// The older "linear" scaling (position interpolation, Chen et al. 2023) divides every w_i by factor.
#pragma once

#include <llm/common/todo.h>

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace llm {

// Llama 1 and 2's base (rope_theta).
inline constexpr double kRopeTheta = 10000.0;

enum class RopePairing { kHalf, kInterleaved };

// How the frequencies are changed for a longer context (the config's rope_scaling, lesson 01).
struct RopeScaling {
  std::string type = "none";  // none | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// The frequencies w_i (float64, (D/2,)) after `scaling`: unchanged for "none", / factor for
// "linear", Llama 3's three bands for "llama3" (the formula above).
inline torch::Tensor scaled_frequencies(const torch::Tensor& inv_freq, const RopeScaling& scaling) {
  // 1. "none": return inv_freq. "linear": inv_freq / factor. Anything else but "llama3": throw
  //    std::invalid_argument naming the type and the valid ones:
  //    "RoPE scaling 'yarn' is not one of: none, linear, llama3".
  // 2. "llama3": wavelength = 2 pi / inv_freq; L = original_max_position_embeddings;
  //    low = inv_freq / factor                                   where wavelength > L / low_freq_factor
  //    s   = (L / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)
  //    mid = (1 - s) * inv_freq / factor + s * inv_freq           where neither bound holds
  //    inv_freq itself                                            where wavelength < L / high_freq_factor
  //    (torch::where twice, as in transformers' _compute_llama3_parameters).
  // BEGIN SOLUTION: scaled_frequencies(): none, linear (/ factor) or Llama 3's three bands by wavelength
  if (scaling.type == "none") return inv_freq;
  if (scaling.type == "linear") return inv_freq / scaling.factor;
  if (scaling.type != "llama3") {
    throw std::invalid_argument("RoPE scaling '" + scaling.type + "' is not one of: none, linear, llama3");
  }
  const double L = static_cast<double>(scaling.original_max_position_embeddings);
  auto wavelength = 2.0 * M_PI / inv_freq;  // (D/2,)
  auto low = torch::where(wavelength > L / scaling.low_freq_factor, inv_freq / scaling.factor, inv_freq);
  auto s = (L / wavelength - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor);
  auto mid = (1 - s) * inv_freq / scaling.factor + s * inv_freq;
  auto medium = wavelength.ge(L / scaling.high_freq_factor).logical_and(wavelength.le(L / scaling.low_freq_factor));
  return torch::where(medium, mid, low);
  // END SOLUTION
}

class RotaryEmbedding {
 public:
  // Precomputes cos(t w_i) and sin(t w_i) for t = 0 .. max_len - 1 in float32.
  RotaryEmbedding(int64_t head_dim, int64_t max_len, double theta = kRopeTheta,
                  RopePairing pairing = RopePairing::kHalf, RopeScaling scaling = {})
      : head_dim_(head_dim), max_len_(max_len), theta_(theta), pairing_(pairing), scaling_(std::move(scaling)) {
    // 1. Check head_dim is positive and even (channels come in pairs) and max_len and theta positive;
    //    e.g. "RotaryEmbedding: head_dim must be positive and even, got 7".
    // 2. w = theta ^ (-(0, 2, 4, .., D-2) / D)                      // (D/2,)  in float64
    //    then w = scaled_frequencies(w, scaling_)                   // a longer context, if asked
    // 3. angles = outer(t = 0 .. L-1, w)                            // (L, D/2)
    // 4. cos_ = cos(angles), sin_ = sin(angles)                     // (L, D/2) float32 each
    // BEGIN SOLUTION: RotaryEmbedding(): w_i = theta^(-2i/D); cos/sin of outer(positions, w)
    TORCH_CHECK(head_dim > 0 && head_dim % 2 == 0, "RotaryEmbedding: head_dim must be positive and even, got ",
                head_dim);
    TORCH_CHECK(max_len > 0, "RotaryEmbedding: max_len must be positive, got ", max_len);
    TORCH_CHECK(theta > 0, "RotaryEmbedding: theta must be positive, got ", theta);
    // float64 for the angles: Hugging Face and Meta compute t * w in fp32, which is off by ~1.5e-4
    // radians at t = 4095; float64 costs nothing here (once, at construction) and is exact enough.
    auto exponents = torch::arange(0, head_dim, 2, torch::kFloat64) / static_cast<double>(head_dim);
    auto inv_freq = scaled_frequencies(torch::pow(theta, -exponents), scaling_);  // (D/2,)
    auto positions = torch::arange(max_len, torch::kFloat64);                     // (L,)
    auto angles = torch::outer(positions, inv_freq);                              // (L, D/2)
    cos_ = angles.cos().to(torch::kFloat32);
    sin_ = angles.sin().to(torch::kFloat32);
    // END SOLUTION
  }

  // x: (B, H, T, D) -> (B, H, T, D), same dtype; positions offset .. offset + T - 1.
  torch::Tensor apply(const torch::Tensor& x, int64_t offset = 0) const {
    // 1. Check x is 4-D with last dim head_dim ("expected x of shape (B, H, T, 8), got [1, 4, 8]"),
    //    and offset >= 0 and offset + T <= max_len, naming the positions asked for and the cache:
    //    "positions 6..9 requested but only 0..7 are cached (max_len = 8)".
    // 2. c, s = cos_, sin_ rows offset .. offset + T - 1               // (T, D/2), broadcast over B, H
    // 3. return rotate(x, c, s)
    // BEGIN SOLUTION: RotaryEmbedding::apply(offset): the table rows of positions offset .. offset+T-1, then rotate
    check_shape(x);
    const int64_t T = x.size(2);
    TORCH_CHECK(offset >= 0 && offset + T <= max_len_, "RotaryEmbedding: positions ", offset, "..", offset + T - 1,
                " requested but only 0..", max_len_ - 1, " are cached (max_len = ", max_len_, ")");
    return rotate(x, cos_.narrow(0, offset, T), sin_.narrow(0, offset, T));  // (T, D/2) angles
    // END SOLUTION
  }

  // Every token at its own position: x (B, H, T, D), positions (B, T) or (T,) integer ids in
  // [0, max_len) -> (B, H, T, D). Packed training (lesson 06) restarts positions at 0 in every
  // document of a row, so position is no longer a function of the column.
  torch::Tensor apply(const torch::Tensor& x, const torch::Tensor& positions) const {
    // 1. Check x as above; positions of an integer dtype ("positions must be an integer tensor, got
    //    Float"); of shape (B, T) or (T,) with x's B and T, naming the shape given as sizes() prints
    //    it ("positions must be (B, T) = (2, 4) or (T,), got [2, 5]"); and every position in
    //    [0, max_len): "position 9 is outside the cached 0..7 (max_len = 8)".
    // 2. c = cos_ rows at the positions: index_select(0, positions.flatten()), viewed as
    //    (B, 1, T, D/2) for (B, T) positions (broadcast over heads) or (T, D/2) for (T,); s likewise.
    // 3. return rotate(x, c, s)
    // BEGIN SOLUTION: RotaryEmbedding::apply(positions): gather the table rows of every token's position, then rotate
    check_shape(x);
    const int64_t B = x.size(0), T = x.size(2);
    TORCH_CHECK(!torch::isFloatingType(positions.scalar_type()) && positions.scalar_type() != torch::kBool,
                "RotaryEmbedding: positions must be an integer tensor, got ", positions.scalar_type());
    const bool per_row = positions.dim() == 2;
    TORCH_CHECK((per_row && positions.size(0) == B && positions.size(1) == T) ||
                    (positions.dim() == 1 && positions.size(0) == T),
                "RotaryEmbedding: positions must be (B, T) = (", B, ", ", T, ") or (T,), got ", positions.sizes());
    if (positions.numel() > 0) {
      const int64_t lo = positions.min().item<int64_t>(), hi = positions.max().item<int64_t>();
      TORCH_CHECK(lo >= 0 && hi < max_len_, "RotaryEmbedding: position ", lo < 0 ? lo : hi,
                  " is outside the cached 0..", max_len_ - 1, " (max_len = ", max_len_, ")");
    }
    auto flat = positions.flatten().to(torch::kLong);
    const int64_t half = head_dim_ / 2;
    auto c = cos_.index_select(0, flat), s = sin_.index_select(0, flat);  // (B T, D/2) or (T, D/2)
    if (per_row) c = c.view({B, 1, T, half}), s = s.view({B, 1, T, half});
    return rotate(x, c, s);
    // END SOLUTION
  }

  int64_t head_dim() const { return head_dim_; }
  int64_t max_len() const { return max_len_; }
  double theta() const { return theta_; }
  RopePairing pairing() const { return pairing_; }
  const RopeScaling& scaling() const { return scaling_; }
  const torch::Tensor& cos() const { return cos_; }  // (L, D/2)
  const torch::Tensor& sin() const { return sin_; }  // (L, D/2)

 private:
  void check_shape(const torch::Tensor& x) const {
    TORCH_CHECK(x.dim() == 4 && x.size(3) == head_dim_, "RotaryEmbedding: expected x of shape (B, H, T, ", head_dim_,
                "), got ", x.sizes());
  }

  // x: (B, H, T, D); c, s: the cos and sin of every token's angles, broadcastable to (B, H, T, D/2).
  torch::Tensor rotate(const torch::Tensor& x, const torch::Tensor& c, const torch::Tensor& s) const {
    // 1. Split x (in float32) into the two members of each pair:
    //      kHalf:        a = x[..., :D/2],  b = x[..., D/2:]
    //      kInterleaved: a = x[..., 0::2],  b = x[..., 1::2]
    // 2. Rotate: a' = a c - b s,  b' = b c + a s
    // 3. Put a', b' back where a, b came from (cat for kHalf; stack on a new last dim and flatten for
    //    kInterleaved) and cast to x's dtype.
    // BEGIN SOLUTION: RotaryEmbedding::rotate(): rotate each channel pair (a, b) by its angle
    auto h = x.to(torch::kFloat32);
    const int64_t half = head_dim_ / 2;
    torch::Tensor out;
    if (pairing_ == RopePairing::kHalf) {
      auto a = h.narrow(-1, 0, half), b = h.narrow(-1, half, half);  // (B, H, T, D/2) each
      out = torch::cat({a * c - b * s, b * c + a * s}, -1);          // (B, H, T, D)
    } else {
      using torch::indexing::Slice;
      auto a = h.index({"...", Slice(0, torch::indexing::None, 2)});       // (B, H, T, D/2) even channels
      auto b = h.index({"...", Slice(1, torch::indexing::None, 2)});       // (B, H, T, D/2) odd channels
      out = torch::stack({a * c - b * s, b * c + a * s}, -1).flatten(-2);  // (B, H, T, D)
    }
    return out.to(x.scalar_type());
    // END SOLUTION
  }

  int64_t head_dim_;
  int64_t max_len_;
  double theta_;
  RopePairing pairing_;
  RopeScaling scaling_;
  torch::Tensor cos_;  // (L, D/2) float32
  torch::Tensor sin_;  // (L, D/2) float32
};

}  // namespace llm
