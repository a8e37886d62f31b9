// Lesson 11, advanced: every NF4 midpoint tied to its lower code, random weights against a
// brute-force nearest code with an odd count and a tail block, the round-trip error bound with
// double quantisation and an all-zero block, the dynamic map against its formula; QLoRA (LoRA on an
// NF4 base) and merge_and_unload, LoRA's gradients, the errors that name the bad value, a folder
// written as PEFT writes it, merge_and_unload on a model; tiled attention with fewer and with more
// queries than keys, a fully padded row, grouped-query heads, a scale and tiles that do not divide
// T, and the backward pass run alone from the forward's output and logsumexp.
// Grade with:  ctest --preset default -R lesson11.advanced
#include "fixtures.h"

#include <llm/common/files.h>
#include <llm/common/safetensors.h>
#include <llm/common/testing.h>
#include <llm/model/causal_lm.h>
#include <llm/model/linear.h>
#include <llm/model/scaled_dot_product.h>
#include <llm/model/tiled_attention.h>
#include <llm/peft/lora.h>
#include <llm/peft/nf4.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace {

using lesson11::F32;
using lesson11::Lesson11Test;
using lesson11::Nf4Table;
using lesson11::TinyConfig;
using llm::testing::AllClose;
using llm::testing::ThrowsWith;

class Nf4Advanced : public Lesson11Test {};
class DoubleQuantAdvanced : public Lesson11Test {};
class QloraAdvanced : public Lesson11Test {};
class LoraAdvanced : public Lesson11Test {};
class AdapterFolderAdvanced : public Lesson11Test {};
class MergeAdvanced : public Lesson11Test {};
class TiledAttentionAdvanced : public Lesson11Test {};

llm::Nf4Options NoDoubleQuant(int64_t blocksize = 64) {
  llm::Nf4Options o;
  o.blocksize = blocksize;
  o.double_quant = false;
  return o;
}

llm::LoraConfig Lora(int64_t r, double alpha, std::vector<std::string> targets = {"q_proj", "v_proj"}) {
  llm::LoraConfig c;
  c.r = r;
  c.alpha = alpha;
  c.target_modules = std::move(targets);
  return c;
}

// The absmax of each block of `blocksize` of x's flattened values (the last block may be shorter),
// repeated per element: (n,).
torch::Tensor AbsmaxPerElement(const torch::Tensor& x, int64_t blocksize) {
  auto flat = x.reshape({-1});
  std::vector<torch::Tensor> parts;
  for (int64_t start = 0; start < flat.numel(); start += blocksize) {
    auto block = flat.slice(0, start, std::min(flat.numel(), start + blocksize));
    parts.push_back(block.abs().max().expand({block.numel()}));
  }
  return torch::cat(parts);
}

void WriteJson(const std::string& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump(2);
}

// ------------------------------------------------------------------------------------ NF4

TEST_F(Nf4Advanced, EveryMidpointTiesToTheLowerCodeAndOneStepAboveToTheUpper) {
  // For each of the 15 fp32 midpoints (c_i + c_{i+1}) / 2: the midpoint itself -> i (right=False),
  // one fp32 step towards +inf -> i + 1. A leading 1.0 fixes absmax = 1, a trailing -1.0 makes 32.
  const auto& c = Nf4Table();
  std::vector<float> x = {1.0f};
  std::vector<int64_t> expected = {15};
  for (int i = 0; i < 15; ++i) {
    const float mid = (c[i] + c[i + 1]) / 2.0f;
    x.push_back(mid);
    expected.push_back(i);
    x.push_back(std::nextafter(mid, 2.0f));
    expected.push_back(i + 1);
  }
  x.push_back(-1.0f);
  expected.push_back(0);
  for (int64_t blocksize : {32, 64}) {  // one full block, then one tail block
    auto t = llm::quantize_nf4(F32(x), NoDoubleQuant(blocksize));
    EXPECT_TRUE(torch::equal(llm::unpack_nibbles(t.packed, 32), torch::tensor(expected, torch::kLong)))
        << "blocksize " << blocksize << ": got " << llm::unpack_nibbles(t.packed, 32);
  }
}

TEST_F(Nf4Advanced, RandomWeightsGetTheNearestCodeTimesTheirBlocksAbsmax) {
  // (3, 5, 7) = 105 weights (odd), blocks of 32: three full ones and a tail of 9 with its own absmax.
  auto w = torch::randn({3, 5, 7}) * 0.02;
  auto absmax = AbsmaxPerElement(w, 32);  // (105,)
  auto idx = lesson11::NearestByArgmin(w.reshape({-1}) / absmax, F32(Nf4Table()));
  auto t = llm::quantize_nf4(w, NoDoubleQuant(32));
  ASSERT_EQ(t.packed.sizes(), (std::vector<int64_t>{53}));
  EXPECT_EQ(t.packed[52].item<uint8_t>() & 0xF, 0) << "the odd count is padded with a 0 index";
  ASSERT_EQ(t.absmax.sizes(), (std::vector<int64_t>{4}));
  EXPECT_TRUE(AllClose(t.absmax, AbsmaxPerElement(w, 32).slice(0, 0, 105, 32), 0, 0));
  EXPECT_TRUE(torch::equal(llm::unpack_nibbles(t.packed, 105), idx)) << "the nearest code, by argmin";
  auto back = llm::dequantize_nf4(t);
  ASSERT_EQ(back.sizes(), w.sizes()) << "the original shape";
  EXPECT_TRUE(AllClose(back, (F32(Nf4Table()).index_select(0, idx) * absmax).view({3, 5, 7}), 1e-6, 1e-9));
}

TEST_F(Nf4Advanced, RoundTripErrorIsBoundedAndAnAllZeroBlockStaysZero) {
  // Blocks of 64: random, all zero, random. Per weight |w - w'| <= half the largest code gap
  // (0.1519036, between -1 and -0.6961928) times its block's absmax; with double quantisation the
  // absmax itself moves by up to 0.00703125 times the largest |absmax - mean|, and |code| <= 1.
  auto w = torch::cat({torch::randn({64}), torch::zeros({64}), torch::randn({64 * 6}) * 0.1}).view({8, 64});
  auto absmax = AbsmaxPerElement(w, 64).view({8, 64});
  auto block_absmax = w.abs().amax(1);
  const double spread = (block_absmax - block_absmax.mean()).abs().max().item<double>();

  auto plain = llm::dequantize_nf4(llm::quantize_nf4(w, NoDoubleQuant()));
  auto dq = llm::dequantize_nf4(llm::quantize_nf4(w));
  EXPECT_FALSE(plain.isnan().any().item<bool>() || dq.isnan().any().item<bool>()) << "absmax 0 must not divide";
  EXPECT_TRUE(torch::equal(plain[1], torch::zeros({64}))) << "an all-zero block comes back as zeros";
  EXPECT_TRUE(torch::equal(dq[1], torch::zeros({64}))) << "code 7 is exactly 0, whatever the 8-bit absmax";
  EXPECT_TRUE(((w - plain).abs() <= lesson11::kNf4HalfLargestGap * absmax + 1e-7).all().item<bool>())
      << "max error " << (w - plain).abs().max().item<double>();
  EXPECT_TRUE((w - dq).abs().le(lesson11::kNf4HalfLargestGap * absmax + 0.00703125 * spread + 1e-6).all().item<bool>());
  EXPECT_TRUE(AllClose(dq, plain, 0, 0.00703125 * spread + 1e-6)) << "the same codes, only the absmax differ";
}

TEST_F(DoubleQuantAdvanced, TheMapFollowsItsFormulaAndBlockwisePicksTheNearestCode) {
  auto map = llm::dynamic_map();
  const auto formula = lesson11::DynamicMapFormula();
  ASSERT_EQ(formula.size(), 256u);
  ASSERT_EQ(map.sizes(), (std::vector<int64_t>{256}));
  EXPECT_TRUE(AllClose(map, torch::tensor(formula, torch::kFloat64), 1e-6, 0))
      << "bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)";
  EXPECT_EQ(map.lt(0).sum().item<int64_t>(), 127);
  EXPECT_EQ(map.gt(0).sum().item<int64_t>(), 128) << "127 positive midpoints and 1";
  EXPECT_NEAR(map[128].item<double>(), 5.5e-7, 1e-12) << "the smallest positive value: 0.55 * 10^-6";

  // 600 values: blocks of 256, 256 and a tail of 88, each the nearest of the map after its absmax.
  auto x = torch::randn({600});
  auto absmax = AbsmaxPerElement(x, 256);
  auto idx = lesson11::NearestByArgmin(x / absmax, map);
  auto b = llm::quantize_blockwise(x, map, 256);
  EXPECT_EQ(b.q.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(b.q.to(torch::kLong), idx));
  EXPECT_TRUE(AllClose(b.absmax, absmax.slice(0, 0, 600, 256), 0, 0));
  EXPECT_TRUE(AllClose(llm::dequantize_blockwise(b, map), map.index_select(0, idx) * absmax, 1e-6, 1e-9));
}

// ----------------------------------------------------------------------------------- QLoRA

TEST_F(QloraAdvanced, ABranchOnAnNf4BaseAndMergeAndUnloadGiveAPlainLinear) {
  lesson11::Holder holder(64, 32);
  auto& layer = *holder->proj;
  auto w = layer.weight.detach().clone();
  auto absmax = AbsmaxPerElement(w, 64);
  auto dequantized =
      (F32(Nf4Table()).index_select(0, lesson11::NearestByArgmin(w.reshape({-1}) / absmax, F32(Nf4Table()))) * absmax)
          .view({32, 64});

  llm::quantize_linear_nf4(layer, NoDoubleQuant());
  auto& lora = llm::add_lora(layer, Lora(4, 8));  // s = 2
  EXPECT_EQ(llm::count_parameters(*holder).first, 4 * (64 + 32)) << "only A and B train";
  lesson11::RandomizeLoraB(*holder);
  auto A = lora.lora_A->weight.detach(), B = lora.lora_B->weight.detach();
  auto x = torch::randn({6, 64});
  auto y = layer.forward(x).detach();
  EXPECT_TRUE(
      AllClose(y, torch::matmul(x, dequantized.t()) + torch::matmul(torch::matmul(x, A.t()), B.t()) * 2.0, 1e-5, 1e-5))
      << "x deq(W)^T + (x A^T B^T) s";
  EXPECT_TRUE(ThrowsWith([&] { llm::merge_lora(layer); }, {"4-bit", "merge_and_unload"}));

  llm::merge_and_unload(*holder);
  EXPECT_EQ(layer.adapter, nullptr);
  ASSERT_EQ(layer.weight.sizes(), (std::vector<int64_t>{32, 64}));
  EXPECT_TRUE(AllClose(layer.weight, dequantized + 2.0 * torch::matmul(B, A), 1e-6, 1e-6)) << "deq(W) + s B A";
  std::vector<std::string> names;
  for (const auto& p : holder->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"proj.weight"})) << "lora_A and lora_B are gone";
  EXPECT_TRUE(layer.weight.requires_grad());
  EXPECT_TRUE(AllClose(layer.forward(x), y, 1e-5, 1e-5));
}

// ------------------------------------------------------------------------------------ LoRA

TEST_F(LoraAdvanced, GradientsOfAAndBAreTheAnalyticOnes) {
  // L = sum(y * G), y = x W^T + (x A^T B^T) s:  dL/dB = s G^T (x A^T),  dL/dA = s B^T G^T x.
  llm::Linear layer(24, 12);
  auto& lora = llm::add_lora(*layer, Lora(3, 6));  // s = 2
  lesson11::RandomizeLoraB(*layer, 0.3);
  layer->weight.requires_grad_(false);
  auto x = torch::randn({7, 24}), G = torch::randn({7, 12});
  (layer(x) * G).sum().backward();
  auto A = lora.lora_A->weight.detach(), B = lora.lora_B->weight.detach();
  EXPECT_TRUE(AllClose(lora.lora_B->weight.grad(), 2.0 * torch::matmul(G.t(), torch::matmul(x, A.t())), 1e-5, 1e-5));
  EXPECT_TRUE(AllClose(lora.lora_A->weight.grad(), 2.0 * torch::matmul(torch::matmul(B.t(), G.t()), x), 1e-5, 1e-5));
  EXPECT_FALSE(layer->weight.grad().defined()) << "the frozen weight gets no gradient";
}

TEST_F(LoraAdvanced, RejectsBadConfigsNamingTheValue) {
  llm::CausalLM base(TinyConfig());
  auto ok = lesson11::CopyOf(base);
  EXPECT_EQ(llm::apply_lora(*ok, Lora(4, 8)).size(), 4u) << "a valid config first";

  auto model = lesson11::CopyOf(base);
  EXPECT_TRUE(ThrowsWith([&] { llm::apply_lora(*model, Lora(0, 8)); }, {"r must", "got 0"}));
  EXPECT_TRUE(ThrowsWith([&] { llm::apply_lora(*model, Lora(4, -1)); }, {"alpha", "-1"}));
  auto dropout = Lora(4, 8);
  dropout.dropout = 1.0;
  EXPECT_TRUE(ThrowsWith([&] { llm::apply_lora(*model, dropout); }, {"dropout", "1"}));
  EXPECT_TRUE(ThrowsWith(
      [&] {
        llm::apply_lora(*model, Lora(4, 8, {"q_proj", "qkv_proj"}));
      },
      {"'qkv_proj'", "q_proj"}))
      << "a target no layer is called";
  const auto [trainable, total] = llm::count_parameters(*model);
  EXPECT_EQ(trainable, total) << "a rejected config leaves the model untouched: nothing frozen, no adapter";
  auto& layer = *ok->named_modules()["model.layers.0.self_attn.q_proj"]->as<llm::LinearImpl>();
  EXPECT_TRUE(ThrowsWith([&] { llm::add_lora(layer, Lora(4, 8)); }, {"already has a LoRA adapter"}));
}

// --------------------------------------------------------------------------- adapter folders

TEST_F(AdapterFolderAdvanced, RefusesToOverwriteAndRejectsAForeignConfigAndAShapeMismatch) {
  llm::CausalLM base(TinyConfig());
  auto model = lesson11::CopyOf(base);
  llm::apply_lora(*model, Lora(4, 8));
  lesson11::RandomizeLoraB(*model);
  lesson11::TempDir tmp;
  const auto dir = tmp / "adapter";
  llm::save_lora_adapter(dir, *model, Lora(4, 8));
  const auto saved = llm::load_safetensors(dir + "/adapter_model.safetensors").tensors;
  lesson11::RandomizeLoraB(*model);
  EXPECT_TRUE(ThrowsWith([&] { llm::save_lora_adapter(dir, *model, Lora(4, 8)); }, {dir, "already exists"}));
  const auto after = llm::load_safetensors(dir + "/adapter_model.safetensors").tensors;
  for (const auto& [name, t] : saved) EXPECT_TRUE(torch::equal(after.at(name), t)) << name << " was overwritten";

  const auto config = nlohmann::json::parse(llm::read_file(dir + "/adapter_config.json"));
  auto copy_with = [&](const std::string& name, const nlohmann::json& j) {
    const auto other = tmp / name;
    std::filesystem::create_directories(other);
    std::filesystem::copy_file(dir + "/adapter_model.safetensors", other + "/adapter_model.safetensors");
    WriteJson(other + "/adapter_config.json", j);
    return other;
  };
  auto ia3 = config;
  ia3["peft_type"] = "IA3";
  const auto ia3_dir = copy_with("ia3", ia3);
  EXPECT_TRUE(ThrowsWith(
      [&] {
        auto fresh = lesson11::CopyOf(base);
        llm::load_lora_adapter(ia3_dir, *fresh);
      },
      {"IA3", "LORA"}));
  auto r8 = config;
  r8["r"] = 8;
  const auto r8_dir = copy_with("r8", r8);
  EXPECT_TRUE(ThrowsWith(
      [&] {
        auto fresh = lesson11::CopyOf(base);
        llm::load_lora_adapter(r8_dir, *fresh);
      },
      {"q_proj.lora_A.weight", "[4, 16]", "[8, 16]"}))
      << "the file's A is (4, 16), a model adapted with r = 8 needs (8, 16)";
}

TEST_F(AdapterFolderAdvanced, LoadsAFolderWrittenAsPeftWritesIt) {
  // PEFT's files, written here by hand: r 2, alpha 4 (s = 2), its usual extra config fields, and
  // random A and B under get_peft_model_state_dict's names. Every q_proj and v_proj then computes
  // x W^T + (x A^T B^T) s, the other layers are untouched.
  llm::CausalLM base(TinyConfig());
  lesson11::TempDir tmp;
  const auto dir = tmp / "peft";
  std::filesystem::create_directories(dir);
  llm::TensorMap tensors;
  for (const char* layer : {"0", "1"}) {
    for (const auto& [proj, out] : std::vector<std::pair<std::string, int64_t>>{{"q_proj", 16}, {"v_proj", 8}}) {
      const auto prefix = std::string("base_model.model.model.layers.") + layer + ".self_attn." + proj;
      tensors[prefix + ".lora_A.weight"] = torch::randn({2, 16}) * 0.3;
      tensors[prefix + ".lora_B.weight"] = torch::randn({out, 2}) * 0.3;
    }
  }
  llm::save_safetensors(dir + "/adapter_model.safetensors", tensors);
  WriteJson(dir + "/adapter_config.json", {{"peft_type", "LORA"},
                                           {"task_type", "CAUSAL_LM"},
                                           {"r", 2},
                                           {"lora_alpha", 4},
                                           {"lora_dropout", 0.05},
                                           {"target_modules", {"v_proj", "q_proj"}},
                                           {"bias", "none"},
                                           {"fan_in_fan_out", false},
                                           {"use_rslora", false},
                                           {"init_lora_weights", true},
                                           {"inference_mode", true},
                                           {"modules_to_save", nullptr},
                                           {"layers_to_transform", nullptr},
                                           {"base_model_name_or_path", "tiny"}});

  auto model = lesson11::CopyOf(base);
  auto config = llm::load_lora_adapter(dir, *model);
  EXPECT_EQ(config.r, 2);
  EXPECT_DOUBLE_EQ(config.alpha, 4.0);
  model->eval();  // lora_dropout 0.05: eval mode for a deterministic check
  auto modules = model->named_modules();
  auto x = torch::randn({3, 16});
  for (const char* layer : {"0", "1"}) {
    for (const char* proj : {"q_proj", "v_proj", "k_proj"}) {
      const auto name = std::string("model.layers.") + layer + ".self_attn." + proj;
      auto& linear = *modules[name]->as<llm::LinearImpl>();
      auto expected = torch::matmul(x, linear.weight.detach().t());
      const auto key = "base_model.model." + name;
      if (tensors.count(key + ".lora_A.weight"))
        expected = expected + torch::matmul(torch::matmul(x, tensors[key + ".lora_A.weight"].t()),
                                            tensors[key + ".lora_B.weight"].t()) *
                                  2.0;
      EXPECT_TRUE(AllClose(linear.forward(x), expected, 1e-5, 1e-5)) << name;
    }
  }
}

TEST_F(MergeAdvanced, MergeAndUnloadGivesPlainLinearsWithTheSameLogits) {
  // The reference: a copy of the base whose q_proj and v_proj weights get s B A added by hand.
  llm::CausalLM base(TinyConfig());
  auto model = lesson11::CopyOf(base);
  llm::apply_lora(*model, Lora(4, 12));  // s = 3
  lesson11::RandomizeLoraB(*model);
  auto reference = lesson11::CopyOf(base);
  {
    torch::NoGradGuard no_grad;
    auto params = model->named_parameters();
    for (auto& p : reference->named_parameters()) {
      const auto& name = p.key();  // "...q_proj.weight"
      const auto layer = name.substr(0, name.size() - std::string("weight").size());
      if (params.contains(layer + "lora_A.weight"))
        p.value().add_(3.0 * torch::matmul(params[layer + "lora_B.weight"], params[layer + "lora_A.weight"]));
    }
  }
  const auto ids = lesson11::SomeIds();
  const auto expected = reference(ids).detach();
  EXPECT_TRUE(AllClose(model(ids), expected, 1e-5, 1e-5)) << "the adapted model before merging";

  llm::merge_and_unload(*model);
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.key().find("lora_"), std::string::npos) << p.key();
    EXPECT_TRUE(p.value().requires_grad()) << p.key() << ": trainable as before";
  }
  EXPECT_EQ(llm::count_parameters(*model).second, llm::count_parameters(*base).second);
  auto ref_params = reference->named_parameters();
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(AllClose(p.value(), ref_params[p.key()], 1e-6, 1e-6)) << p.key();
  EXPECT_TRUE(AllClose(model(ids), expected, 1e-5, 1e-5)) << "merged: the same logits at the base model's cost";
}

// ------------------------------------------------------------------------------ tiled attention

TEST_F(TiledAttentionAdvanced, FewerQueriesThanKeysAreAlignedBottomRight) {
  // T = 5 new queries after 7 cached keys (Tk = 12): query i sees keys j <= i + 7, as lesson 03's
  // causal option (its KV cache) aligns them.
  auto x = lesson11::RandomQkv(2, 2, 2, 5, 12, 8);
  llm::TiledAttentionOptions o;
  o.block_q = 2;
  o.block_k = 5;
  auto out = llm::tiled_attention(x.q, x.k, x.v, o);
  llm::AttentionOptions lesson03;
  lesson03.causal = true;
  auto ref = llm::scaled_dot_product_attention(x.q, x.k, x.v, lesson03).out;
  EXPECT_TRUE(AllClose(out, ref, 1e-5, 1e-5));
  EXPECT_TRUE(
      AllClose(llm::tiled_attention_forward(x.q, x.k, x.v, o).lse, lesson11::NaiveLse(x.q, x.k, true), 1e-5, 1e-5));
  auto g = torch::randn(out.sizes());
  auto got = lesson11::Grads(out, x, g), want = lesson11::Grads(ref, x, g);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(AllClose(got[i], want[i], 1e-5, 1e-5)) << "gradient " << i;
}

TEST_F(TiledAttentionAdvanced, MoreQueriesThanKeysLeaveTheFirstRowsEmpty) {
  // T = 9, Tk = 4, bottom-right: query i sees keys j <= i - 5, so queries 0..4 see none: output 0,
  // logsumexp -inf, zero gradients, no NaN.
  auto x = lesson11::RandomQkv(1, 2, 2, 9, 4, 4);
  llm::TiledAttentionOptions o;
  o.block_q = 2;
  o.block_k = 3;
  auto f = llm::tiled_attention_forward(x.q, x.k, x.v, o);
  EXPECT_TRUE(torch::equal(f.out.slice(2, 0, 5), torch::zeros({1, 2, 5, 4})));
  EXPECT_TRUE(f.lse.slice(2, 0, 5).isneginf().all().item<bool>()) << f.lse;
  EXPECT_TRUE(AllClose(f.out, lesson11::NaiveAttention(x.q, x.k, x.v, true), 1e-5, 1e-5));
  EXPECT_TRUE(AllClose(f.lse, lesson11::NaiveLse(x.q, x.k, true), 1e-5, 1e-5));
  auto out = llm::tiled_attention(x.q, x.k, x.v, o);
  auto g = torch::randn(out.sizes());
  auto got = lesson11::Grads(out, x, g);
  auto want = lesson11::Grads(lesson11::NaiveAttention(x.q, x.k, x.v, true), x, g);
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(got[i].isnan().any().item<bool>()) << "gradient " << i;
    EXPECT_TRUE(AllClose(got[i], want[i], 1e-5, 1e-5)) << "gradient " << i;
  }
  EXPECT_TRUE(torch::equal(got[0].slice(2, 0, 5), torch::zeros({1, 2, 5, 4}))) << "dq of the empty rows";
}

TEST_F(TiledAttentionAdvanced, AFullyPaddedRowGivesZerosAndZeroGradients) {
  // Row 0 is left-padded by 2, row 1 is all padding. Causal: row 0's first two queries see only
  // padding; non-causal: only row 1 is dead.
  auto x = lesson11::RandomQkv(2, 2, 2, 6, 6, 4);
  auto padding = torch::tensor(std::vector<int64_t>{0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0}).view({2, 6}).to(torch::kBool);
  for (bool causal : {true, false}) {
    llm::TiledAttentionOptions o;
    o.causal = causal;
    o.key_padding_mask = padding;
    o.block_q = 4;
    o.block_k = 4;
    auto out = llm::tiled_attention(x.q, x.k, x.v, o);
    EXPECT_FALSE(out.isnan().any().item<bool>());
    EXPECT_TRUE(torch::equal(out[1], torch::zeros({2, 6, 4}))) << "causal " << causal << ": the all-padding row";
    auto ref = lesson11::NaiveAttention(x.q, x.k, x.v, causal, padding);
    EXPECT_TRUE(AllClose(out, ref, 1e-5, 1e-5)) << "causal " << causal;
    EXPECT_TRUE(AllClose(llm::tiled_attention_forward(x.q, x.k, x.v, o).lse,
                         lesson11::NaiveLse(x.q, x.k, causal, padding), 1e-5, 1e-5));
    auto g = torch::randn(out.sizes());
    auto got = lesson11::Grads(out, x, g), want = lesson11::Grads(ref, x, g);
    for (int i = 0; i < 3; ++i) {
      EXPECT_FALSE(got[i].isnan().any().item<bool>()) << "gradient " << i << ", causal " << causal;
      EXPECT_TRUE(AllClose(got[i], want[i], 1e-5, 1e-5)) << "gradient " << i << ", causal " << causal;
      EXPECT_TRUE(torch::equal(got[i][1], torch::zeros_like(got[i][1]))) << "gradient " << i << " of the padded row";
    }
    EXPECT_TRUE(torch::equal(got[1][0].slice(1, 0, 2), torch::zeros({2, 2, 4}))) << "dk of padded keys";
  }
}

TEST_F(TiledAttentionAdvanced, GroupedQueryHeadsReadTheirKeyValueHead) {
  // H = 6 query heads on Hkv = 2: heads 0-2 read kv head 0, heads 3-5 kv head 1. Equal to
  // multi-head attention on k and v repeated per head, and to lesson 03's grouped-query attention.
  auto x = lesson11::RandomQkv(2, 6, 2, 10, 10, 4);
  llm::TiledAttentionOptions o;
  o.block_q = 4;
  o.block_k = 3;
  auto out = llm::tiled_attention(x.q, x.k, x.v, o);
  auto repeated = llm::tiled_attention(x.q, x.k.repeat_interleave(3, 1), x.v.repeat_interleave(3, 1), o);
  EXPECT_TRUE(AllClose(out, repeated, 1e-6, 1e-6)) << "GQA equals MHA with each kv head repeated G times";
  auto ref = lesson11::NaiveAttention(x.q, x.k, x.v, true);
  EXPECT_TRUE(AllClose(out, ref, 1e-5, 1e-5));
  auto g = torch::randn(out.sizes());
  auto got = lesson11::Grads(out, x, g), want = lesson11::Grads(ref, x, g);
  ASSERT_EQ(got[1].sizes(), x.k.sizes());
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(AllClose(got[i], want[i], 1e-5, 1e-5)) << "gradient " << i << " (dk, dv summed over the group)";
}

TEST_F(TiledAttentionAdvanced, AScaleAndTilesThatDoNotDivideT) {
  auto x = lesson11::RandomQkv(1, 2, 1, 13, 13, 8);
  for (bool causal : {true, false}) {
    llm::TiledAttentionOptions o;
    o.causal = causal;
    o.block_q = 5;
    o.block_k = 3;
    o.scale = 0.3;
    auto f = llm::tiled_attention_forward(x.q, x.k, x.v, o);
    EXPECT_TRUE(AllClose(f.out, lesson11::NaiveAttention(x.q, x.k, x.v, causal, {}, 0.3), 1e-5, 1e-5))
        << "causal " << causal;
    EXPECT_TRUE(AllClose(f.lse, lesson11::NaiveLse(x.q, x.k, causal, {}, 0.3), 1e-5, 1e-5)) << "causal " << causal;
  }
}

TEST_F(TiledAttentionAdvanced, TheBackwardRunsAloneFromTheForwardsOutputAndLogsumexp) {
  // tiled_attention_backward is given only q, k, v, the forward's out and L, and dO: it recomputes
  // P = exp(scale q k^T - L) tile by tile. Its gradients equal autograd's through lesson 03. And it
  // really uses the L it is given: L + log 2 halves every P, so dV = P^T dO halves exactly.
  auto q = torch::randn({2, 2, 7, 8}), k = torch::randn({2, 1, 10, 8}), v = torch::randn({2, 1, 10, 8});
  auto g = torch::randn({2, 2, 7, 8});
  llm::TiledAttentionOptions o;
  o.block_q = 3;
  o.block_k = 4;
  auto f = llm::tiled_attention_forward(q, k, v, o);
  auto grads = llm::tiled_attention_backward(q, k, v, f, g, o);
  lesson11::Qkv leaf{q.clone().requires_grad_(), k.clone().requires_grad_(), v.clone().requires_grad_()};
  auto want = lesson11::Grads(lesson11::NaiveAttention(leaf.q, leaf.k, leaf.v, true), leaf, g);
  ASSERT_EQ(grads.dk.sizes(), k.sizes());
  EXPECT_TRUE(AllClose(grads.dq, want[0], 1e-5, 1e-5)) << "dq";
  EXPECT_TRUE(AllClose(grads.dk, want[1], 1e-5, 1e-5)) << "dk";
  EXPECT_TRUE(AllClose(grads.dv, want[2], 1e-5, 1e-5)) << "dv";
  auto halved = llm::tiled_attention_backward(q, k, v, {f.out, f.lse + std::log(2.0)}, g, o);
  EXPECT_TRUE(AllClose(halved.dv, grads.dv / 2, 1e-5, 1e-6)) << "P recomputed from the L passed in";
}

}  // namespace
