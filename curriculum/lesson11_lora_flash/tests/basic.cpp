// Lesson 11, basic: NF4 on golden bytes worked from bitsandbytes' table, every code value, the block absmax,
// the nibble order, the tie at the midpoint between codes 8 and 9, bitsandbytes' dynamic map and
// the bytes of double quantisation, a 4-bit Linear; LoRA's PEFT initialisation, its forward with
// alpha / r and rsLoRA, dropout on the branch only, apply_lora on a tiny CausalLM, training that
// leaves the base bit-identical, merge and unmerge, and the PEFT adapter folder; tiled attention's
// output, logsumexp and gradients against lesson 03.
// Grade with:  ctest --preset default -R lesson11.basic
#include "fixtures.h"

#include <llm/common/files.h>
#include <llm/common/safetensors.h>
#include <llm/common/testing.h>
#include <llm/model/causal_lm.h>
#include <llm/model/linear.h>
#include <llm/model/tiled_attention.h>
#include <llm/peft/lora.h>
#include <llm/peft/nf4.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace {

using lesson11::F32;
using lesson11::Lesson11Test;
using lesson11::Nf4Table;
using lesson11::TinyConfig;
using llm::testing::AllClose;

class Nf4Test : public Lesson11Test {};
class ScaleBlocksTest : public Lesson11Test {};
class NibbleTest : public Lesson11Test {};
class DoubleQuantTest : public Lesson11Test {};
class Nf4LinearTest : public Lesson11Test {};
class LoraTest : public Lesson11Test {};
class ApplyLoraTest : public Lesson11Test {};
class MergeTest : public Lesson11Test {};
class AdapterFolderTest : public Lesson11Test {};
class TiledAttentionTest : public Lesson11Test {};

torch::Tensor Bytes(const std::vector<int>& values) {
  return torch::tensor(std::vector<int64_t>(values.begin(), values.end()), torch::kLong).to(torch::kUInt8);
}
torch::Tensor Longs(const std::vector<int64_t>& values) {
  return torch::tensor(values, torch::kLong);
}

llm::Nf4Options NoDoubleQuant(int64_t blocksize = 64) {
  llm::Nf4Options o;
  o.blocksize = blocksize;
  o.double_quant = false;
  return o;
}

llm::LoraConfig Lora(int64_t r, double alpha, double dropout = 0.0, bool rslora = false) {
  llm::LoraConfig c;
  c.r = r;
  c.alpha = alpha;
  c.dropout = dropout;
  c.use_rslora = rslora;
  return c;
}

// --------------------------------------------------------------------------------------- NF4

TEST_F(Nf4Test, GivesTheGoldenBytes) {
  // Worked from bitsandbytes' NF4 table: [0.1, -0.5, 1.0, 0.3] is one partial block with absmax 1.0; nearest codes
  // 8 (0.0795803), 2 (-0.5250731), 15 (1.0), 11 (0.3379152); element 0 in the high nibble.
  auto t = llm::quantize_nf4(F32({0.1f, -0.5f, 1.0f, 0.3f}), NoDoubleQuant());
  EXPECT_EQ(t.shape, (std::vector<int64_t>{4}));
  ASSERT_EQ(t.packed.sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(t.packed.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(t.packed, Bytes({0x82, 0xFB}))) << "got " << t.packed;
  EXPECT_TRUE(AllClose(t.absmax, F32({1.0f}), 0, 0));
  EXPECT_TRUE(torch::equal(llm::unpack_nibbles(t.packed, 4), Longs({8, 2, 15, 11})));
  auto back = llm::dequantize_nf4(t);
  ASSERT_EQ(back.sizes(), (std::vector<int64_t>{4}));
  EXPECT_TRUE(AllClose(back, F32({0.0795803f, -0.5250731f, 1.0f, 0.3379152f}), 0, 1e-7));
}

TEST_F(Nf4Test, EveryCodeValueQuantisesToItsOwnIndexAndBack) {
  // The 16 code values themselves (absmax 1): indices 0..15 in order, so bytes 0x01, 0x23, ..., 0xEF,
  // and they dequantise to the table exactly. Times 2.5 the same indices, and code * 2.5 back.
  const auto expected_bytes = Bytes({0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF});
  auto table = F32(Nf4Table());
  auto t = llm::quantize_nf4(table, NoDoubleQuant());
  EXPECT_TRUE(torch::equal(t.packed, expected_bytes)) << "got " << t.packed;
  EXPECT_TRUE(AllClose(llm::dequantize_nf4(t), table, 0, 0)) << "bitsandbytes' NF4 table, index 0b0000 .. 0b1111";

  auto scaled = table * 2.5;
  auto t2 = llm::quantize_nf4(scaled, NoDoubleQuant());
  EXPECT_TRUE(torch::equal(t2.packed, expected_bytes)) << "scaling a block does not change its codes";
  EXPECT_TRUE(AllClose(t2.absmax, F32({2.5f}), 0, 0));
  EXPECT_TRUE(AllClose(llm::dequantize_nf4(t2), scaled, 0, 0)) << "code[idx] * absmax";
}

TEST_F(ScaleBlocksTest, OneAbsmaxPerBlockTheTailItsOwnAndAZeroBlockStaysZero) {
  // Blocks of 4: [1, -2, 0.5, 4] (absmax 4), [0, 0, 0, 0] (absmax 0, scaled 0: no NaN), and the
  // tail [3, -6] with its own absmax 6.
  auto x = F32({1, -2, 0.5f, 4, 0, 0, 0, 0, 3, -6});
  auto s = llm::scale_blocks(x, 4);
  EXPECT_TRUE(AllClose(s.absmax, F32({4, 0, 6}), 0, 0));
  EXPECT_TRUE(AllClose(s.scaled, F32({0.25f, -0.5f, 0.125f, 1, 0, 0, 0, 0, 0.5f, -1}), 0, 0));
  auto s2 = llm::scale_blocks(x.view({2, 5}), 4);
  EXPECT_TRUE(AllClose(s2.scaled, s.scaled, 0, 0)) << "any shape is flattened first";
  EXPECT_TRUE(AllClose(s2.absmax, s.absmax, 0, 0));
}

TEST_F(NibbleTest, TheEvenElementGoesInTheHighNibbleAndAnOddCountIsPadded) {
  // (1, 2), (3, 4), (5, pad 0) -> 0x12, 0x34, 0x50 (bitsandbytes: q[0::2] << 4 | q[1::2]).
  auto packed = llm::pack_nibbles(Longs({1, 2, 3, 4, 5}));
  EXPECT_EQ(packed.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(packed, Bytes({0x12, 0x34, 0x50}))) << "got " << packed;
  EXPECT_TRUE(torch::equal(llm::unpack_nibbles(packed, 5), Longs({1, 2, 3, 4, 5}))) << "the pad is dropped";
  EXPECT_TRUE(torch::equal(llm::unpack_nibbles(Bytes({0xAB, 0x0F}), 4), Longs({10, 11, 0, 15})))
      << "byte >> 4 first, then byte & 0xF";
}

TEST_F(Nf4Test, AValueOnTheMidpointBetweenCodes8And9GoesToCode8) {
  // The fp32 midpoint (c8 + c9) / 2 = 0.1202552: bucketize with right=False puts it in the lower
  // bucket (code 8); one fp32 step above goes to code 9, one step below to 8. absmax 1 (the first
  // value), so the scaled values are the values.
  const float c8 = Nf4Table()[8], c9 = Nf4Table()[9];
  const float mid = (c8 + c9) / 2.0f;
  EXPECT_NEAR(mid, 0.1202552, 1e-7);
  auto x = F32({1.0f, mid, std::nextafter(mid, 1.0f), std::nextafter(mid, 0.0f)});
  for (int64_t blocksize : {4, 64}) {  // a full block (x * (1 / absmax)) and a tail block (x / absmax)
    auto t = llm::quantize_nf4(x, NoDoubleQuant(blocksize));
    EXPECT_TRUE(torch::equal(t.packed, Bytes({0xF8, 0x98})))
        << "blocksize " << blocksize << ": expected indices 15, 8, 9, 8, got " << llm::unpack_nibbles(t.packed, 4);
  }
}

TEST_F(DoubleQuantTest, TheDynamicMapQuantisesItselfAndTheAbsmaxComesBackWithinItsError) {
  // bitsandbytes' 8-bit dynamic map: 256 sorted values, 0 and 1 among them, the most negative
  // -(1 - 0.9 / 128) = -0.99296875 (the last midpoint of linspace(0.1, 1, 65)).
  auto map = llm::dynamic_map();
  ASSERT_EQ(map.sizes(), (std::vector<int64_t>{256}));
  EXPECT_TRUE((map.slice(0, 1) > map.slice(0, 0, -1)).all().item<bool>()) << "strictly increasing";
  EXPECT_TRUE(map.eq(0).any().item<bool>());
  EXPECT_EQ(map[255].item<float>(), 1.0f);
  EXPECT_NEAR(map[0].item<double>(), -0.99296875, 1e-6);
  // The map quantises itself (absmax 1): index i for value i, and back exactly.
  auto b = llm::quantize_blockwise(map, map, 256);
  EXPECT_TRUE(AllClose(b.absmax, F32({1.0f}), 0, 0));
  EXPECT_TRUE(torch::equal(b.q, torch::arange(256, torch::kLong).to(torch::kUInt8)));
  EXPECT_TRUE(AllClose(llm::dequantize_blockwise(b, map), map, 0, 0));

  // A (128, 256) weight: 512 blocks of 64, their absmax minus its mean in 2 blocks of 256. The 8-bit
  // map's largest gap is 0.9 / 64 (its top decade), so each absmax comes back within
  // 0.9 / 128 = 0.00703125 of the largest |absmax - mean| of its block.
  auto w = torch::randn({128, 256});
  auto t = llm::quantize_nf4(w);                         // bitsandbytes' defaults: blocksize 64, double quantisation
  auto true_absmax = w.reshape({-1, 64}).abs().amax(1);  // (512,)
  EXPECT_NEAR(t.offset, true_absmax.mean().item<double>(), 1e-6) << "offset = mean of the absmax values";
  auto back = llm::dequantize_blockwise(t.absmax8, llm::dynamic_map()) + t.offset;
  ASSERT_EQ(back.sizes(), true_absmax.sizes());
  const double spread = (true_absmax - true_absmax.mean()).abs().max().item<double>();
  EXPECT_TRUE(AllClose(back, true_absmax, 0, 0.00703125 * spread + 1e-6));
  // Bytes: 0.5 (codes) + 1 / 64 (8-bit absmax) + 4 / (64 * 256) (their fp32 absmax) per weight, + 4 (offset).
  EXPECT_EQ(t.bytes(), 32768 / 2 + 512 + 4 * 2 + 4);
  EXPECT_EQ(llm::quantize_nf4(w, NoDoubleQuant()).bytes(), 32768 / 2 + 4 * 512) << "0.5 + 4 / 64 per weight";
}

TEST_F(Nf4LinearTest, FreesTheWeightAndMultipliesByTheDequantisedOne) {
  // The dequantised weight written out: code[argmin |w / absmax - code|] * absmax per block of 64.
  llm::Linear layer(64, 32);
  auto w = layer->weight.detach().clone();
  auto blocks = w.reshape({-1, 64});
  auto absmax = blocks.abs().amax(1, /*keepdim=*/true);  // (32, 1)
  auto idx = lesson11::NearestByArgmin(blocks / absmax, F32(Nf4Table()));
  auto dequantized = (F32(Nf4Table()).index_select(0, idx).view({-1, 64}) * absmax).view({32, 64});

  llm::quantize_linear_nf4(*layer, NoDoubleQuant());
  EXPECT_EQ(layer->weight.numel(), 0) << "the fp32 weight is released";
  EXPECT_FALSE(layer->weight.requires_grad()) << "a 4-bit weight is frozen";
  ASSERT_TRUE(layer->adapter != nullptr);
  auto x = torch::randn({3, 5, 64});
  auto y = layer(x);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 5, 32}));
  EXPECT_TRUE(AllClose(y, torch::matmul(x, dequantized.t()), 1e-5, 1e-5));
  EXPECT_GT((y - torch::matmul(x, w.t())).abs().max().item<double>(), 1e-3) << "the weight really went to 4 bits";
  auto x1 = torch::randn({1, 64});
  EXPECT_TRUE(AllClose(layer(x1), torch::matmul(x1, dequantized.t()), 1e-5, 1e-5)) << "a single row";
}

// -------------------------------------------------------------------------------------- LoRA

TEST_F(LoraTest, StartsAsTheBaseLayerWithPeftsInit) {
  // PEFT: A Kaiming-uniform (a = sqrt(5)), U(-1/sqrt(64), 1/sqrt(64)) = U(-0.125, 0.125); B zeros.
  llm::Linear layer(64, 32);
  auto x = torch::randn({4, 64});
  auto base = layer(x);
  auto& lora = llm::add_lora(*layer, Lora(8, 16));
  ASSERT_EQ(lora.lora_A->weight.sizes(), (std::vector<int64_t>{8, 64}));
  ASSERT_EQ(lora.lora_B->weight.sizes(), (std::vector<int64_t>{32, 8}));
  const double a_max = lora.lora_A->weight.abs().max().item<double>();
  EXPECT_LE(a_max, 0.125);
  EXPECT_GT(a_max, 0.1) << "512 uniform draws reach close to the bound";
  EXPECT_TRUE(torch::equal(lora.lora_B->weight, torch::zeros({32, 8})));
  EXPECT_TRUE(lora.lora_A->weight.requires_grad() && lora.lora_B->weight.requires_grad());
  auto params = layer->named_parameters();
  EXPECT_TRUE(params.contains("lora_A.weight") && params.contains("lora_B.weight"))
      << "registered on the layer, so the model's names are <layer>.lora_A.weight";
  EXPECT_TRUE(torch::equal(layer(x), base)) << "B = 0: the adapted layer is exactly the base";
}

TEST_F(LoraTest, ForwardIsTheBasePlusTheBranchScaledByAlphaOverR) {
  // y = x W^T + (x A^T B^T) * s: r 4, alpha 16 -> s = 4; rsLoRA -> s = 16 / sqrt(4) = 8.
  for (bool rslora : {false, true}) {
    llm::Linear layer(48, 24);
    auto& lora = llm::add_lora(*layer, Lora(4, 16, 0.0, rslora));
    lesson11::RandomizeLoraB(*layer);
    const double s = rslora ? 8.0 : 4.0;
    auto W = layer->weight.detach(), A = lora.lora_A->weight.detach(), B = lora.lora_B->weight.detach();
    for (auto x : {torch::randn({2, 3, 48}), torch::randn({1, 48})}) {
      auto expected = torch::matmul(x, W.t()) + torch::matmul(torch::matmul(x, A.t()), B.t()) * s;
      EXPECT_TRUE(AllClose(layer(x), expected, 1e-5, 1e-5))
          << (rslora ? "rsLoRA: alpha / sqrt(r)" : "alpha / r") << ", x " << x.sizes();
    }
  }
}

TEST_F(LoraTest, DropoutTouchesOnlyTheBranch) {
  llm::Linear layer(32, 16);
  auto& lora = llm::add_lora(*layer, Lora(4, 8, /*dropout=*/0.5));
  auto W = layer->weight.detach();
  layer->train();
  // B = 0: whatever dropout does to the branch's input, the output is the frozen product, exactly.
  auto x = torch::randn({6, 32});
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(AllClose(layer(x), torch::matmul(x, W.t()), 1e-6, 1e-6)) << "the frozen path never sees dropout";

  // With B random and x nonzero in one feature only, dropout(x) is, row by row, 0 or 2x: the output
  // minus x W^T is 0 or twice the undropped branch, and both happen.
  lesson11::RandomizeLoraB(*layer);
  auto xs = torch::zeros({200, 32});
  xs.select(1, 5).copy_(torch::randn({200}) + 3.0);
  auto A = lora.lora_A->weight.detach(), B = lora.lora_B->weight.detach();
  auto branch = torch::matmul(torch::matmul(xs, A.t()), B.t()) * 2.0;  // s = 8 / 4
  auto d = layer(xs) - torch::matmul(xs, W.t());
  auto dropped = d.abs().amax(1).lt(1e-5);
  auto kept = (d - 2 * branch).abs().amax(1).lt(1e-4);
  EXPECT_TRUE(dropped.logical_or(kept).all().item<bool>()) << "each row's branch is dropped or scaled by 1 / (1 - p)";
  const int64_t n_dropped = dropped.sum().item<int64_t>();
  EXPECT_GT(n_dropped, 50);
  EXPECT_LT(n_dropped, 150);

  layer->eval();
  EXPECT_TRUE(AllClose(layer(xs), torch::matmul(xs, W.t()) + branch, 1e-5, 1e-5)) << "no dropout in eval mode";
}

TEST_F(ApplyLoraTest, WrapsQAndVOfEveryLayerAndFreezesEverythingElse) {
  llm::CausalLM model(TinyConfig());
  const auto ids = lesson11::SomeIds();
  const auto logits = model(ids).detach();
  const auto total_before = llm::count_parameters(*model).second;
  auto names = llm::apply_lora(*model, Lora(4, 8));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                                             "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}));
  int64_t adapters = 0;
  for (const auto& p : model->named_parameters()) {
    const bool is_lora = p.key().find(".lora_") != std::string::npos;
    EXPECT_EQ(p.value().requires_grad(), is_lora) << p.key();
    if (is_lora) {
      ++adapters;
      EXPECT_TRUE(p.key().find("q_proj.lora_") != std::string::npos ||
                  p.key().find("v_proj.lora_") != std::string::npos)
          << p.key();
    }
  }
  EXPECT_EQ(adapters, 8);
  // r (in + out) per target: q_proj 16 -> 16, v_proj 16 -> 8; 2 layers: 2 * (4 * 32 + 4 * 24) = 448.
  const auto [trainable, total] = llm::count_parameters(*model);
  EXPECT_EQ(trainable, 448);
  EXPECT_EQ(total, total_before + 448);
  EXPECT_TRUE(torch::equal(model(ids), logits)) << "B = 0: the adapted model's logits are the base model's";
}

TEST_F(ApplyLoraTest, TrainingStepsLowerTheLossAndLeaveTheBaseBitIdentical) {
  llm::CausalLM model(TinyConfig());
  llm::apply_lora(*model, Lora(4, 8));
  std::map<std::string, torch::Tensor> frozen;
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model->named_parameters()) {
    if (p.value().requires_grad())
      trainable.push_back(p.value());
    else
      frozen[p.key()] = p.value().detach().clone();
  }
  const auto ids = lesson11::SomeIds();
  auto loss_of = [&] {
    auto logits = model(ids);  // (2, 8, 32)
    return torch::nn::functional::cross_entropy(logits.slice(1, 0, -1).reshape({-1, 32}),
                                                ids.slice(1, 1).reshape({-1}));
  };
  torch::optim::AdamW optimizer(trainable, torch::optim::AdamWOptions(1e-2));
  std::vector<double> losses;
  for (int step = 0; step < 30; ++step) {
    optimizer.zero_grad();
    auto loss = loss_of();
    loss.backward();
    if (step == 0) {
      for (const auto& p : model->named_parameters()) {
        const bool is_lora = p.key().find(".lora_") != std::string::npos;
        EXPECT_EQ(p.value().grad().defined(), is_lora) << p.key() << ": only the adapters get gradients";
        if (p.key().find("lora_B") != std::string::npos)
          EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0) << p.key();
      }
    }
    optimizer.step();
    losses.push_back(loss.item<double>());
  }
  EXPECT_LT(losses.back(), losses.front() - 0.1) << "from " << losses.front() << " to " << losses.back();
  for (const auto& p : model->named_parameters()) {
    if (frozen.count(p.key())) EXPECT_TRUE(torch::equal(p.value(), frozen[p.key()])) << p.key() << " changed";
  }
}

TEST_F(MergeTest, MergedForwardEqualsTheUnmergedOneAndUnmergeRestoresW) {
  llm::Linear layer(32, 24);
  const auto W0 = layer->weight.detach().clone();
  auto& lora = llm::add_lora(*layer, Lora(4, 12));  // s = 3
  lesson11::RandomizeLoraB(*layer);
  auto A = lora.lora_A->weight.detach(), B = lora.lora_B->weight.detach();
  auto x = torch::randn({5, 32});
  const auto unmerged = layer(x).detach();

  llm::merge_lora(*layer);
  EXPECT_TRUE(AllClose(layer->weight, W0 + 3.0 * torch::matmul(B, A), 1e-6, 1e-6)) << "W += s B A";
  EXPECT_TRUE(AllClose(layer(x), unmerged, 1e-5, 1e-5)) << "merged: x (W + s B A)^T, the branch skipped";
  llm::merge_lora(*layer);
  EXPECT_TRUE(AllClose(layer(x), unmerged, 1e-5, 1e-5)) << "merging twice adds the update once";

  llm::unmerge_lora(*layer);
  EXPECT_TRUE(AllClose(layer->weight, W0, 0, 1e-6)) << "W -= s B A (fp32: exact up to rounding)";
  EXPECT_TRUE(AllClose(layer(x), unmerged, 1e-5, 1e-5)) << "unmerged again: base plus branch";
}

TEST_F(AdapterFolderTest, HoldsPeftsNamesAndConfigAndGivesTheSameLogitsOnAFreshBase) {
  llm::CausalLM base(TinyConfig());
  auto model = lesson11::CopyOf(base);
  const auto config = Lora(4, 8);
  llm::apply_lora(*model, config);
  lesson11::RandomizeLoraB(*model);
  const auto ids = lesson11::SomeIds();
  const auto logits = model(ids).detach();

  lesson11::TempDir tmp;
  const auto dir = tmp / "adapter";
  llm::save_lora_adapter(dir, *model, config, "tiny-base");
  auto file = llm::load_safetensors(dir + "/adapter_model.safetensors");
  std::vector<std::string> names;
  for (const auto& [name, t] : file.tensors) names.push_back(name);
  std::vector<std::string> expected;
  for (const char* layer : {"0", "1"})
    for (const char* proj : {"q_proj", "v_proj"})
      for (const char* ab : {"lora_A", "lora_B"})
        expected.push_back(std::string("base_model.model.model.layers.") + layer + ".self_attn." + proj + "." + ab +
                           ".weight");
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected) << "PEFT's get_peft_model_state_dict names";
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj.";
  ASSERT_TRUE(file.tensors.count(q + "lora_B.weight"));
  EXPECT_EQ(file.tensors[q + "lora_A.weight"].sizes(), (std::vector<int64_t>{4, 16}));
  EXPECT_EQ(file.tensors[q + "lora_B.weight"].sizes(), (std::vector<int64_t>{16, 4}));
  EXPECT_TRUE(AllClose(file.tensors[q + "lora_B.weight"],
                       model->named_parameters()["model.layers.0.self_attn.q_proj.lora_B.weight"], 0, 0));

  auto json = nlohmann::json::parse(llm::read_file(dir + "/adapter_config.json"));
  EXPECT_EQ(json.value("peft_type", ""), "LORA");
  EXPECT_EQ(json.value("r", 0), 4);
  EXPECT_EQ(json.value("lora_alpha", 0.0), 8.0);
  EXPECT_EQ(json.at("target_modules").get<std::vector<std::string>>(), (std::vector<std::string>{"q_proj", "v_proj"}));

  auto fresh = lesson11::CopyOf(base);
  auto loaded = llm::load_lora_adapter(dir, *fresh);
  EXPECT_EQ(loaded.r, 4);
  EXPECT_TRUE(AllClose(fresh(ids), logits, 0, 1e-6)) << "the base plus the saved adapters is the trained model";
}

// --------------------------------------------------------------------------- tiled attention

TEST_F(TiledAttentionTest, OutputAndLogsumexpEqualLessonThreesForAnyTileSize) {
  // T = Tk = 13: tiles of 1, 7 (13 = 7 + 6) and 128 (one tile); causal and not.
  auto x = lesson11::RandomQkv(2, 3, 3, 13, 13, 8);
  for (bool causal : {true, false}) {
    auto ref = lesson11::NaiveAttention(x.q, x.k, x.v, causal);
    auto ref_lse = lesson11::NaiveLse(x.q, x.k, causal);
    for (int64_t block : {1, 7, 128}) {
      llm::TiledAttentionOptions o;
      o.causal = causal;
      o.block_q = o.block_k = block;
      auto f = llm::tiled_attention_forward(x.q, x.k, x.v, o);
      ASSERT_EQ(f.out.sizes(), x.q.sizes());
      ASSERT_EQ(f.lse.sizes(), (std::vector<int64_t>{2, 3, 13}));
      EXPECT_TRUE(AllClose(f.out, ref, 1e-5, 1e-5)) << "causal " << causal << ", tiles of " << block;
      EXPECT_TRUE(AllClose(f.lse, ref_lse, 1e-5, 1e-5)) << "logsumexp, causal " << causal << ", tiles of " << block;
    }
  }
}

TEST_F(TiledAttentionTest, GradientsEqualAutogradThroughLessonThree) {
  auto x = lesson11::RandomQkv(2, 2, 2, 11, 11, 8);
  auto g = torch::randn({2, 2, 11, 8});
  for (bool causal : {true, false}) {
    llm::TiledAttentionOptions o;
    o.causal = causal;
    o.block_q = 4;
    o.block_k = 3;
    auto out = llm::tiled_attention(x.q, x.k, x.v, o);
    EXPECT_TRUE(AllClose(out, lesson11::NaiveAttention(x.q, x.k, x.v, causal), 1e-5, 1e-5));
    auto got = lesson11::Grads(out, x, g);
    auto want = lesson11::Grads(lesson11::NaiveAttention(x.q, x.k, x.v, causal), x, g);
    const char* names[] = {"dq", "dk", "dv"};
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(AllClose(got[i], want[i], 1e-5, 1e-5)) << names[i] << ", causal " << causal;
  }
}

}  // namespace
