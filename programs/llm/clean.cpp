// llm clean: run lesson 06's cleaning chain over text files and report what each rule removed.
//
//   llm clean --input data/austen/train.txt --out runs/demo/clean
//   llm clean --input data/austen/train.txt --out runs/demo/clean --inject-junk 40     see every rule fire
//
// The chain, in order (each stage sees only what the previous kept):
//   1. length          fewer than --min-chars bytes
//   2. gopher quality  word count, word length, symbols, bullets, ellipses, letters, stop words
//   3. repetition      Gopher's duplicate lines/paragraphs and n-gram rules
//   4. exact dedup     a document identical to an earlier one
//   5. near dedup      MinHash + LSH, verified by true Jaccard >= --jaccard
//   6. quality score   a hashed n-gram classifier scoring below --min-score. It is trained on a
//                      reference of text you trust (--reference, the built-in novels by default:
//                      CS336 uses pages linked from Wikipedia) against junk generated from it, never
//                      on the documents being cleaned, which may be junk themselves
//
// Real corpora are messy; the built-in novels are not, so --inject-junk N adds N generated junk
// documents (shuffled words, boilerplate, repeated lines, random characters), N/4 exact copies and
// N/4 near copies of real documents: a learner sees each rule catch its kind of problem.
// Writes <out>/kept.txt (the kept documents, separated by blank lines), <out>/removed.jsonl (one
// line per removed document: index, rule, measured value, threshold, preview) and <out>/report.json.
#include "commands.h"

#include <llm/cli/text.h>
#include <llm/common/paths.h>
#include <llm/data/dedup.h>
#include <llm/data/filters.h>
#include <llm/data/quality.h>

#include <filesystem>
#include <map>

namespace llm::cli {

namespace {

namespace fs = std::filesystem;

struct CleanOptions {
  std::vector<std::string> inputs;
  std::string out, split = "chapters", reference = std::string(kSourceDir) + "/data/austen/train.txt";
  int64_t inject = 0, min_chars = 200, threads = 0;
  double jaccard = 0.8, min_score = 0.5;
  uint64_t seed = 7;
};

std::string preview(const std::string& doc) {
  std::string p;
  for (char c : doc.substr(0, 70)) p += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  return p + (doc.size() > 70 ? "..." : "");
}

int run(const CleanOptions& o) {
  configure_threads(o.threads);
  if (fs::exists(o.out) && !fs::is_empty(o.out)) {
    throw UsageError("'" + o.out + "' already exists; choose another --out (nothing is overwritten)");
  }
  std::vector<std::string> docs;
  std::vector<std::string> origin;  // "file" or the kind of injected document
  for (const auto& path : o.inputs) {
    for (auto& d : split_documents(read_file(path), o.split)) docs.push_back(std::move(d)), origin.push_back(path);
  }
  if (docs.empty()) throw UsageError("the inputs hold no documents");
  const size_t real = docs.size();
  SplitMix64 rng(o.seed);
  for (int64_t i = 0; i < o.inject; ++i) {
    docs.push_back(make_junk(docs[rng.below(real)], o.seed, i));
    origin.push_back("injected junk");
  }
  for (int64_t i = 0; i < o.inject / 4; ++i) {
    docs.push_back(docs[rng.below(real)]);
    origin.push_back("injected exact copy");
    std::string near = docs[rng.below(real)];
    auto words = split_words(near);
    if (words.size() > 20) {  // change one word in twenty
      std::string changed;
      for (size_t w = 0; w < words.size(); ++w)
        changed += (w % 20 == 7 ? std::string("changed") : std::string(words[w])) + " ";
      near = changed;
    }
    docs.push_back(near);
    origin.push_back("injected near copy");
  }
  fmt::print("llm clean: {} documents ({} from {} file(s), {} injected)\n", docs.size(), real, o.inputs.size(),
             docs.size() - real);

  std::vector<FilterResult> verdict(docs.size());
  auto alive = [&](size_t i) { return verdict[i].keep; };
  // 1-3: the rules, one document at a time.
  for (size_t i = 0; i < docs.size(); ++i) {
    verdict[i] = length_filter(docs[i], o.min_chars);
    if (verdict[i].keep) verdict[i] = gopher_quality(docs[i]);
    if (verdict[i].keep) verdict[i] = gopher_repetition(docs[i]);
  }
  // 4-5: deduplication over what is left.
  std::vector<size_t> index;
  std::vector<std::string> left;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (alive(i)) index.push_back(i), left.push_back(docs[i]);
  }
  const auto exact = exact_dedup(left);
  std::vector<size_t> index2;
  std::vector<std::string> left2;
  for (size_t k = 0; k < left.size(); ++k) {
    if (!exact[k]) {
      verdict[index[k]] = FilterResult::reject("exact_duplicate", 1, 1);
    } else {
      index2.push_back(index[k]), left2.push_back(left[k]);
    }
  }
  MinHashOptions mh;
  mh.threshold = o.jaccard;
  const auto near = minhash_dedup(left2, mh);
  for (size_t k = 0; k < left2.size(); ++k) {
    if (!near.keep[k]) {
      verdict[index2[k]] = FilterResult::reject(
          "near_duplicate", jaccard(shingles(left2[k], mh.ngram), shingles(left2[near.cluster[k]], mh.ngram)),
          o.jaccard);
    }
  }
  // 6: the classifier, trained on the reference against junk made from it, then scoring every survivor.
  std::vector<std::string> positives, negatives;
  for (auto& d : split_documents(read_file(o.reference), o.split)) positives.push_back(std::move(d));
  for (size_t k = 0; k < positives.size(); ++k) {
    negatives.push_back(make_junk(positives[k], o.seed + 1000, static_cast<int64_t>(k)));
  }
  std::vector<std::string> survivors;
  std::vector<size_t> survivor_index;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (alive(i)) survivors.push_back(docs[i]), survivor_index.push_back(i);
  }
  double auc = NAN;
  if (positives.size() >= 2 && !survivors.empty()) {
    QualityClassifier classifier;
    train_quality_classifier(classifier, positives, negatives);
    auc = roc_auc(classifier->score(positives), classifier->score(negatives));
    const auto scores = classifier->score(survivors);
    for (size_t k = 0; k < survivors.size(); ++k) {
      if (scores[k] < o.min_score) {
        verdict[survivor_index[k]] = FilterResult::reject("quality_score", scores[k], o.min_score);
      }
    }
  }

  // ---- report ----
  fs::create_directories(o.out);
  std::map<std::string, int64_t> removed;
  std::map<std::string, std::string> example;
  std::string kept_text, removed_lines;
  int64_t kept = 0, kept_bytes = 0, all_bytes = 0;
  std::map<std::string, std::map<std::string, int64_t>> by_origin;  // rule -> origin -> count
  for (size_t i = 0; i < docs.size(); ++i) {
    all_bytes += static_cast<int64_t>(docs[i].size());
    const auto& v = verdict[i];
    if (v.keep) {
      ++kept, kept_bytes += static_cast<int64_t>(docs[i].size());
      kept_text += docs[i] + (docs[i].empty() || docs[i].back() != '\n' ? "\n\n\n" : "\n\n");
      continue;
    }
    ++removed[v.rule];
    ++by_origin[v.rule][origin[i]];
    if (!example.count(v.rule))
      example[v.rule] = fmt::format("{:.3g} vs {:.3g}: \"{}\"", v.value, v.limit, preview(docs[i]));
    removed_lines += nlohmann::json{{"index", i},       {"rule", v.rule},      {"value", v.value},
                                    {"limit", v.limit}, {"origin", origin[i]}, {"preview", preview(docs[i])}}
                         .dump() +
                     "\n";
  }
  write_text((fs::path(o.out) / "kept.txt").string(), kept_text);
  write_text((fs::path(o.out) / "removed.jsonl").string(), removed_lines);
  nlohmann::json report = {{"documents", docs.size()},          {"kept", kept},       {"bytes", all_bytes},
                           {"kept_bytes", kept_bytes},          {"removed", removed}, {"removed_by_origin", by_origin},
                           {"classifier_auc_on_reference", auc}};
  write_text((fs::path(o.out) / "report.json").string(), report.dump(2) + "\n");
  fmt::print("\n{:<30}{:>8}   {}\n", "rule", "removed", "first example (measured vs threshold)");
  for (const auto& [rule, n] : removed) fmt::print("{:<30}{:>8}   {}\n", rule, n, example[rule]);
  if (removed.empty()) fmt::print("(no document was removed)\n");
  fmt::print("\nkept {} of {} documents ({:.2f} of {:.2f} MB); quality classifier AUC on its reference {:.3f}\n", kept,
             docs.size(), kept_bytes / 1e6, all_bytes / 1e6, auc);
  fmt::print("llm clean: wrote {0}/kept.txt, {0}/removed.jsonl, {0}/report.json\n", o.out);
  return 0;
}

}  // namespace

int clean_main(int argc, char** argv) {
  CLI::App app{"Filter, deduplicate and score text documents with lesson 06's rules; report what each removed.",
               "llm clean"};
  CleanOptions o;
  app.add_option("--input", o.inputs, "text file(s)")->required()->check(CLI::ExistingFile);
  app.add_option("--out", o.out, "folder for kept.txt, removed.jsonl, report.json (must not exist)")->required();
  app.add_option("--split", o.split, "how files are cut into documents")
      ->capture_default_str()
      ->check(CLI::IsMember(kSplitModes));
  app.add_option("--inject-junk", o.inject, "add N junk documents, N/4 exact and N/4 near copies")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--min-chars", o.min_chars, "the length filter's minimum")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--jaccard", o.jaccard, "near-duplicate threshold")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-score", o.min_score, "quality score below which a document is removed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", o.seed, "seed of the injected documents")->capture_default_str();
  app.add_option("--reference", o.reference, "trusted text the quality classifier learns good documents from")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  app.add_option("--threads", o.threads, "compute threads; 0 = every core")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  if (int rc = parse_command_line(app, argc, argv); rc >= 0) return rc;
  return run_command("llm clean", [&] { return run(o); });
}

}  // namespace llm::cli
