//===- MultimodalTest.cpp - conversations with images and audio -----------===//
//
// Goldens from tools/goldens/make_multimodal_goldens.py: two conversations
// with a PNG, a JPEG and a WAV clip, their ids as Qwen's chat template and
// `tokenizers` make them, the pixel values of transformers'
// Qwen2VLImageProcessor, the clip's WhisperFeatureExtractor features, the
// mrope positions of Qwen2.5-Omni's own get_rope_index and the window
// order and patch positions of transformers' vision_utils. A batch of both
// samples then carries each of these where the program reads it.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Multimodal.h"
#include "runtime/io/Json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace veomni::rt {
namespace {

std::string Dir() {
  return std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/multimodal";
}

std::string ReadText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<float> ReadF32(const std::string &path) {
  std::string bytes = ReadText(path);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

/// Per image of `s`, the largest difference from the processor's pixels
/// (`pixels`, the images' values end to end); all of them must be read.
std::vector<float> WorstPixelErrors(const MediaSample &s,
                                    const std::vector<float> &pixels) {
  std::vector<float> worst;
  size_t at = 0;
  for (const VisionPatches &image : s.images) {
    worst.push_back(0);
    for (float v : image.values)
      worst.back() = at < pixels.size()
                         ? std::max(worst.back(), std::fabs(v - pixels[at++]))
                         : INFINITY;
  }
  EXPECT_EQ(at, pixels.size());
  return worst;
}

std::vector<int64_t> Ints(const Json &array) {
  std::vector<int64_t> out;
  for (const Json &v : array.items)
    out.push_back(static_cast<int64_t>(v.number));
  return out;
}

/// Expects `s`'s ids and trained flags to be `want`'s "ids" and "trained",
/// and (with `positions`) its multimodal positions `want`'s "positions".
void ExpectEqualsGolden(const MediaSample &s, const Json &want,
                        const MediaModel *positions = nullptr) {
  EXPECT_EQ(std::vector<int64_t>(s.ids.begin(), s.ids.end()),
            Ints(*FindField(want, "ids")));
  EXPECT_EQ(std::vector<int64_t>(s.trained.begin(), s.trained.end()),
            Ints(*FindField(want, "trained")));
  if (!positions)
    return;
  std::vector<std::vector<int32_t>> pos = MultimodalPositions(s, *positions);
  const Json &hf = *FindField(want, "positions");
  for (int d = 0; d < 3; ++d)
    EXPECT_EQ(std::vector<int64_t>(pos[d].begin(), pos[d].end()),
              Ints(hf.items[d]))
        << "axis " << d;
}

struct Golden {
  MediaModel model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<std::string> lines;
  Json expected;
};

const Golden &G() {
  static Golden *g = [] {
    auto *g = new Golden();
    auto model = ReadMediaModel(Dir() + "/omni.json");
    EXPECT_TRUE(model.ok()) << model.status();
    g->model = *model;
    g->model.image.minPixels = 64;
    g->model.image.maxPixels = 1024;
    g->model.video.minPixels = 64;
    g->model.video.maxPixels = 1024;
    auto tok = Tokenizer::Load(Dir() + "/tokenizer.json");
    EXPECT_TRUE(tok.ok()) << tok.status();
    g->tokenizer = *std::move(tok);
    std::istringstream lines(ReadText(Dir() + "/samples.jsonl"));
    for (std::string line; std::getline(lines, line);)
      g->lines.push_back(line);
    auto json = ParseJson(ReadText(Dir() + "/expected.json"));
    EXPECT_TRUE(json.ok());
    g->expected = *std::move(json);
    return g;
  }();
  return *g;
}

MediaSample Encode(size_t i) {
  MediaSample s;
  absl::Status status = EncodeMediaSample(G().lines[i], Dir(), *G().tokenizer,
                                          ChatFormat::ChatML, -1, G().model, s);
  EXPECT_TRUE(status.ok()) << status;
  return s;
}

TEST(Multimodal, TheConfigNamesThePlaceholdersAndTowers) {
  const MediaModel &m = G().model;
  EXPECT_EQ(m.modelType, "qwen2_5_omni");
  EXPECT_TRUE(m.vision && m.audio && m.windowed);
  EXPECT_EQ(m.image.patch, 4);
  EXPECT_EQ(m.image.merge, 2);
  EXPECT_EQ(m.windowSize, 16);
  EXPECT_EQ(m.imageToken, G().tokenizer->TokenId("<|image_pad|>"));
  EXPECT_EQ(m.audioStart, G().tokenizer->TokenId("<|audio_bos|>"));
  EXPECT_EQ(m.features.mels, 16);
  EXPECT_EQ(m.audioChunk, 100);
}

TEST(Multimodal, AConfigSavedByTransformersFiveTakesItsDefaultIds) {
  // Qwen2_5OmniConfig().save_pretrained() in transformers 5: the thinker
  // names its image, video and audio ids but not the vision start and end
  // its get_rope_index reads (Qwen's 151652 / 151653).
  std::string path = ::testing::TempDir() + "/omni5.json";
  std::ofstream(path) << R"({"model_type": "qwen2_5_omni", "thinker_config": {
      "model_type": "qwen2_5_omni_thinker", "audio_token_index": 151646,
      "image_token_index": 151655, "video_token_index": 151656,
      "audio_start_token_id": 151647, "audio_end_token_id": 151648,
      "position_id_per_seconds": 25,
      "vision_config": {"patch_size": 14, "spatial_merge_size": 2,
                        "temporal_patch_size": 2, "window_size": 112},
      "audio_config": {"num_mel_bins": 128, "n_window": 100},
      "text_config": {"vocab_size": 152064}}})";
  auto m = ReadMediaModel(path);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->visionStart, 151652);
  EXPECT_EQ(m->visionEnd, 151653);
  EXPECT_EQ(m->imageToken, 151655);
  EXPECT_EQ(m->videoToken, 151656);
  EXPECT_EQ(m->audioToken, 151646);
  EXPECT_EQ(m->features.mels, 128);
  EXPECT_EQ(m->audioChunk, 200);
  EXPECT_EQ(m->videoPositionsPerSecond, 25);
  // A damaged config names itself.
  std::ofstream(path) << "{\"thinker_config\": ";
  auto bad = ReadMediaModel(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("omni5.json: "), std::string::npos);
  std::remove(path.c_str());
}

TEST(Multimodal, SamplesEqualTheProcessorsAndGetRopeIndex) {
  ASSERT_EQ(G().lines.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const Json &want = G().expected.items[i];
    MediaSample s = Encode(i);
    std::vector<int64_t> ids = Ints(*FindField(want, "ids"));
    ASSERT_EQ(std::vector<int64_t>(s.ids.begin(), s.ids.end()), ids);
    std::vector<int64_t> trained = Ints(*FindField(want, "trained"));
    EXPECT_EQ(std::vector<int64_t>(s.trained.begin(), s.trained.end()),
              trained);
    // Pixels: the PNG is at its target size (bit for bit), the JPEG is
    // resized (within 1/255 of the pixel range before normalisation,
    // 1/255/std after).
    const Json &grids = *FindField(want, "grids");
    const Json &videos = *FindField(want, "video_grids");
    ASSERT_EQ(s.images.size(), grids.items.size() + videos.items.size());
    if (!videos.items.empty()) {
      // The video: the frames sample_frames picks at 2 fps, decoded as the
      // ffmpeg tool decodes them, in temporal patches of 2.
      const VisionPatches &v = s.images[0];
      std::vector<int64_t> g = Ints(videos.items[0]);
      EXPECT_EQ(v.t, g[0]);
      EXPECT_EQ(v.h, g[1]);
      EXPECT_EQ(v.w, g[2]);
      EXPECT_EQ(v.secondsPerGrid, 1.0);
      std::vector<float> golden =
          ReadF32(Dir() + "/sample" + std::to_string(i) + ".video.f32");
      ASSERT_EQ(v.values.size(), golden.size());
      float worst = 0;
      for (size_t k = 0; k < golden.size(); ++k)
        worst = std::max(worst, std::fabs(v.values[k] - golden[k]));
      EXPECT_LE(worst, 1.0f / 255 / 0.26130258f);
      auto decoded = DecodeVideo(Dir() + "/clip.mp4", G().model.sampling);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(decoded->totalFrames, 12);
      EXPECT_EQ(decoded->fps, 6);
      std::vector<int64_t> indices = Ints(*FindField(want, "video_indices"));
      EXPECT_EQ(decoded->indices, indices);
    }
    std::vector<float> pixels =
        videos.items.empty()
            ? ReadF32(Dir() + "/sample" + std::to_string(i) + ".pixels.f32")
            : std::vector<float>();
    size_t at = 0;
    for (size_t k = 0; k < grids.items.size(); ++k) {
      std::vector<int64_t> g = Ints(grids.items[k]);
      EXPECT_EQ(s.images[k].t, g[0]);
      EXPECT_EQ(s.images[k].h, g[1]);
      EXPECT_EQ(s.images[k].w, g[2]);
      float worst = 0;
      for (float v : s.images[k].values)
        worst = std::max(worst, std::fabs(v - pixels[at++]));
      EXPECT_LE(worst, (i == 1 && k == 0) ? 1.0f / 255 / 0.26130258f : 0.0f)
          << "image " << k;
    }
    EXPECT_EQ(at, pixels.size());
    // Audio: the Whisper features, cut to whole groups of 4 frames.
    std::vector<int64_t> frames = Ints(*FindField(want, "frames"));
    ASSERT_EQ(s.audios.size(), frames.size());
    if (!frames.empty()) {
      std::vector<float> features =
          ReadF32(Dir() + "/sample" + std::to_string(i) + ".features.f32");
      EXPECT_EQ(s.audios[0].frames, frames[0]);
      ASSERT_EQ(s.audios[0].values.size(), features.size());
      float worst = 0;
      for (size_t k = 0; k < features.size(); ++k)
        worst = std::max(worst, std::fabs(s.audios[0].values[k] - features[k]));
      EXPECT_LT(worst, 1e-4);
    }
    // The mrope positions of the model's own get_rope_index.
    std::vector<std::vector<int32_t>> pos = MultimodalPositions(s, G().model);
    const Json &hf = *FindField(want, "positions");
    for (int d = 0; d < 3; ++d) {
      std::vector<int64_t> h = Ints(hf.items[d]);
      EXPECT_EQ(std::vector<int64_t>(pos[d].begin(), pos[d].end()), h)
          << "axis " << d;
    }
  }
}

TEST(Multimodal, ABatchPutsEveryFeatureWhereTheProgramReadsIt) {
  MediaSample a = Encode(0), b = Encode(1);
  MediaBudget budget;
  budget.rows = 2;
  budget.seqLen = 128;
  budget.patches = 200; // 180 used
  budget.frames = 48;   // 32 used
  MediaBatcher batcher(G().model, budget);
  EXPECT_EQ(batcher.Oversize(a), "");
  ASSERT_TRUE(batcher.Add(a));
  ASSERT_TRUE(batcher.Add(b)); // does not fit row 0's rest: row 1
  MediaSample c = a;
  EXPECT_FALSE(batcher.Add(c)); // rows and patches are spent
  MediaBatch batch = batcher.Finish();
  EXPECT_EQ(batch.samples, 2);
  const auto &ids = batch.ints["input_ids"];
  const auto &segments = batch.ints["segment_ids"];
  const auto &labels = batch.ints["labels"];
  const auto &positions = batch.ints["position_ids"];
  ASSERT_EQ(ids.size(), 256u);
  ASSERT_EQ(positions.size(), 3 * 256u);
  // Sample a at row 0, b at row 1; padding after each in a segment of its
  // own, labels -100.
  for (size_t t = 0; t < a.ids.size(); ++t) {
    EXPECT_EQ(ids[t], a.ids[t]);
    EXPECT_EQ(segments[t], 0);
  }
  EXPECT_EQ(segments[a.ids.size()], 1);
  EXPECT_EQ(labels[a.ids.size()], -100);
  EXPECT_EQ(ids[128 + 5], b.ids[5]);
  EXPECT_EQ(segments[255], 1);
  std::vector<std::vector<int32_t>> pb = MultimodalPositions(b, G().model);
  for (int d = 0; d < 3; ++d)
    for (size_t t = 0; t < b.ids.size(); ++t)
      ASSERT_EQ(positions[d * 256 + 128 + t], pb[d][t]);
  // Labels: the next token where it is trained.
  for (size_t t = 0; t + 1 < a.ids.size(); ++t)
    EXPECT_EQ(labels[t], a.trained[t + 1] ? a.ids[t + 1] : -100) << t;

  // Vision: the images of a, then b's two, each in Qwen2.5's window order
  // (vision_utils' window index), their (row, column)s, one segment each.
  const int64_t unit = 4, P = 200, row = 3 * 2 * 4 * 4;
  const auto &pixels = batch.floats["pixel_values"];
  const auto &vpos = batch.ints["vision_position_ids"];
  const auto &vseg = batch.ints["vision_segment_ids"];
  const auto &slots = batch.ints["image_token_positions"];
  ASSERT_EQ(pixels.size(), size_t(P * row));
  ASSERT_EQ(slots.size(), size_t(P / unit));
  std::vector<const VisionPatches *> images = {&a.images[0], &b.images[0],
                                               &b.images[1]};
  std::vector<const Json *> windows = {
      &FindField(G().expected.items[0], "windows")->items[0],
      &FindField(G().expected.items[1], "windows")->items[0],
      &FindField(G().expected.items[1], "windows")->items[1]};
  std::vector<const Json *> rowcols = {
      &FindField(G().expected.items[0], "rowcols")->items[0],
      &FindField(G().expected.items[1], "rowcols")->items[0],
      &FindField(G().expected.items[1], "rowcols")->items[1]};
  // Where each image's tokens are (flat indices), in raster order.
  std::vector<std::vector<int32_t>> tokens(3);
  for (int64_t i = 0, k = -1; i < 256; ++i)
    if (ids[i] == G().model.imageToken) {
      if (i == 0 || ids[i - 1] != G().model.imageToken)
        ++k;
      tokens[k].push_back(static_cast<int32_t>(i));
    }
  int64_t at = 0, slot = 0;
  for (int k = 0; k < 3; ++k) {
    std::vector<int64_t> order = Ints(*windows[k]);
    ASSERT_EQ(order.size(), 15u);
    for (size_t j = 0; j < order.size(); ++j, ++slot) {
      // Merger row j lands on the image's token order[j].
      EXPECT_EQ(slots[slot], tokens[k][order[j]]);
      for (int64_t u = 0; u < unit; ++u, ++at) {
        const int64_t src = order[j] * unit + u;
        EXPECT_EQ(0, std::memcmp(&pixels[at * row],
                                 &images[k]->values[src * row], row * 4));
        std::vector<int64_t> rc = Ints(rowcols[k]->items[src]);
        EXPECT_EQ(vpos[at], rc[0]);
        EXPECT_EQ(vpos[P + at], rc[1]);
        EXPECT_EQ(vseg[at], k);
      }
    }
  }
  // Padding: zeros, a segment of its own, features onto the last token.
  for (; at < P; ++at) {
    EXPECT_EQ(pixels[at * row], 0.f);
    EXPECT_EQ(vseg[at], 3);
  }
  for (; slot < P / unit; ++slot)
    EXPECT_EQ(slots[slot], 255);

  // Audio: a's clip at the start of the tower's one 48-frame chunk, the
  // rest of it padding.
  const auto &features = batch.floats["input_features"];
  const auto &apos = batch.ints["audio_position_ids"];
  const auto &aseg = batch.ints["audio_segment_ids"];
  const auto &aslots = batch.ints["audio_token_positions"];
  ASSERT_EQ(features.size(), 16u * 48);
  ASSERT_EQ(a.audios[0].frames, 34);
  EXPECT_EQ(features[3 * 48 + 5], a.audios[0].values[3 * 34 + 5]);
  EXPECT_EQ(features[3 * 48 + 40], 0.f);
  ASSERT_EQ(apos.size(), 24u);
  EXPECT_EQ(apos[16], 16); // 17 steps of 34 frames
  EXPECT_EQ(aseg[16], 0);
  EXPECT_EQ(apos[17], 17); // the clip's chunk padded: a segment of its own
  EXPECT_EQ(aseg[17], 1);
  ASSERT_EQ(aslots.size(), 12u);
  for (int k = 0; k < 8; ++k)
    EXPECT_EQ(ids[aslots[k]], G().model.audioToken);
  EXPECT_EQ(aslots[8], 255);

  // The batcher starts over: an oversized sample says what it exceeds.
  MediaBudget small = budget;
  small.patches = 32;
  MediaBatcher tight(G().model, small);
  EXPECT_NE(tight.Oversize(a).find("60 image patches, over the batch's 32"),
            std::string::npos)
      << tight.Oversize(a);
}

// Qwen3-VL (tools/goldens/make_qwen3_vl_data_golden.py): its processor's
// pixels (mean and std 0.5), its get_rope_index positions, and the taps
// and weights by which each patch samples the learned position grid.
TEST(Multimodal, Qwen3VLSamplesEqualItsProcessorAndPositionGrid) {
  const std::string dir =
      std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/qwen3_vl_data";
  auto model = ReadMediaModel(dir + "/config.json");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->modelType, "qwen3_vl");
  EXPECT_FALSE(model->windowed);
  EXPECT_EQ(model->positionGrid, 6);
  EXPECT_EQ(model->image.mean[1], 0.5);
  EXPECT_EQ(model->image.stddev[2], 0.5);
  model->image.minPixels = 64;
  model->image.maxPixels = 1024;
  auto expected = ParseJson(ReadText(dir + "/expected.json"));
  ASSERT_TRUE(expected.ok());
  std::string line = ReadText(dir + "/samples.jsonl");
  line = line.substr(0, line.find('\n'));
  MediaSample s;
  ASSERT_TRUE(EncodeMediaSample(line, dir, *G().tokenizer, ChatFormat::ChatML,
                                -1, *model, s)
                  .ok());
  EXPECT_EQ(std::vector<int64_t>(s.ids.begin(), s.ids.end()),
            Ints(*FindField(*expected, "ids")));
  EXPECT_EQ(std::vector<int64_t>(s.trained.begin(), s.trained.end()),
            Ints(*FindField(*expected, "trained")));
  // The JPEG is resized (within 1/255 of the range before normalising),
  // the PNG is not (bit for bit).
  std::vector<float> pixels = ReadF32(dir + "/pixels.f32");
  ASSERT_EQ(s.images.size(), 2u);
  std::vector<float> worst = WorstPixelErrors(s, pixels);
  EXPECT_LE(worst[0], 1.0f / 255 / 0.5f);
  EXPECT_EQ(worst[1], 0.0f);
  std::vector<std::vector<int32_t>> pos = MultimodalPositions(s, *model);
  const Json &hf = *FindField(*expected, "positions");
  for (int d = 0; d < 3; ++d)
    EXPECT_EQ(std::vector<int64_t>(pos[d].begin(), pos[d].end()),
              Ints(hf.items[d]))
        << "axis " << d;

  // In a batch: every patch's four taps and weights, as transformers'
  // vision_utils computes them (f32, equal), then padding patches.
  MediaBudget budget;
  budget.seqLen = 128;
  budget.patches = 128; // 120 used
  MediaBatcher batcher(*model, budget);
  ASSERT_TRUE(batcher.Add(s));
  MediaBatch batch = batcher.Finish();
  const auto &taps = batch.ints["vision_pos_embed_ids"];
  const auto &weights = batch.floats["vision_pos_embed_weights"];
  ASSERT_EQ(taps.size(), 4 * 128u);
  ASSERT_EQ(weights.size(), 4 * 128u);
  EXPECT_EQ(batch.ints.count("vision_window_segment_ids"), 0u);
  const Json &wantTaps = *FindField(*expected, "pos_embed_ids");
  std::vector<float> wantWeights = ReadF32(dir + "/pos_embed_weights.f32");
  ASSERT_EQ(wantTaps.items.size(), 120u);
  ASSERT_EQ(wantWeights.size(), 4 * 120u);
  int64_t mixed = 0;
  for (size_t p = 0; p < 120; ++p)
    for (size_t k = 0; k < 4; ++k) {
      ASSERT_EQ(taps[4 * p + k], wantTaps.items[p].items[k].number)
          << "patch " << p << " tap " << k;
      ASSERT_EQ(weights[4 * p + k], wantWeights[4 * p + k])
          << "patch " << p << " tap " << k;
      mixed += weights[4 * p + k] > 0 && weights[4 * p + k] < 1;
    }
  EXPECT_GT(mixed, 100) << "a 6 x 10 image on a 6 x 6 grid mixes taps";
  for (size_t k = 4 * 120; k < weights.size(); ++k)
    EXPECT_EQ(weights[k], 0.f);
}

TEST(Multimodal, Qwen3VLVideosEqualItsProcessorWithTimestamps) {
  const std::string dir =
      std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/qwen3_vl_data";
  auto model = ReadMediaModel(dir + "/config.json");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(model->timestamps);
  EXPECT_TRUE(model->sampling.spread);
  // The golden's processor settings: shortest_edge, max_video_tokens x
  // factor^2, longest_edge.
  model->video.minPixels = 256;
  model->video.maxPixels = 32 * 8 * 8;
  model->videoTotalPixels = 8192;
  auto expected = ParseJson(ReadText(dir + "/expected.json"));
  ASSERT_TRUE(expected.ok());
  const Json &want = *FindField(*expected, "video");
  std::string line = ReadText(dir + "/video.jsonl");
  line = line.substr(0, line.find('\n'));
  MediaSample s;
  absl::Status st = EncodeMediaSample(line, dir, *G().tokenizer,
                                      ChatFormat::ChatML, -1, *model, s);
  ASSERT_TRUE(st.ok()) << st;
  // "<0.3 seconds>" and "<1.5 seconds>" (frames 0, 4, 7, 11 of 12 at 6
  // fps), each before its temporal patch's block; positions an image's.
  ExpectEqualsGolden(s, want, &*model);
  std::vector<int64_t> grid = Ints(*FindField(want, "grid"));
  ASSERT_EQ(s.images.size(), static_cast<size_t>(grid[0]));
  for (const VisionPatches &frame : s.images) {
    EXPECT_EQ(frame.t, 1);
    EXPECT_EQ(frame.h, grid[1]);
    EXPECT_EQ(frame.w, grid[2]);
  }
  // The ffmpeg tool's frames and ours: within one 8-bit step.
  for (float worst : WorstPixelErrors(s, ReadF32(dir + "/video.f32")))
    EXPECT_LE(worst, 1.0f / 255 / 0.5f + 1e-6f);

  // sample_frames' frame numbers at other lengths, rates and limits.
  for (const Json &c : FindField(*expected, "sampling")->items) {
    VideoSampling sampling = model->sampling;
    sampling.fps = FindField(c, "fps")->number;
    sampling.maxFrames =
        static_cast<int64_t>(FindField(c, "max_frames")->number);
    auto got = SampleFrames(static_cast<int64_t>(FindField(c, "total")->number),
                            FindField(c, "video_fps")->number, sampling);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, Ints(*FindField(c, "indices")))
        << "total " << FindField(c, "total")->number;
  }
  // The video processor's sizes, 16-pixel patches merged 2 x 2.
  for (const Json &c : FindField(*expected, "sizes")->items) {
    VisionConfig config;
    config.patch = 16;
    config.minPixels = static_cast<int64_t>(FindField(c, "min")->number);
    config.maxPixels = static_cast<int64_t>(FindField(c, "frame_max")->number);
    auto got = VideoSmartResize(
        static_cast<int64_t>(FindField(c, "frames")->number),
        static_cast<int64_t>(FindField(c, "height")->number),
        static_cast<int64_t>(FindField(c, "width")->number), config,
        static_cast<int64_t>(FindField(c, "total")->number));
    ASSERT_TRUE(got.ok()) << got.status();
    std::vector<int64_t> size = Ints(*FindField(c, "size"));
    EXPECT_EQ(got->first, size[0]) << FindField(c, "height")->number;
    EXPECT_EQ(got->second, size[1]) << FindField(c, "width")->number;
  }
  VisionConfig config;
  EXPECT_FALSE(VideoSmartResize(1, 64, 64, config, 1 << 20).ok())
      << "one frame is less than a temporal patch";
}

TEST(Multimodal, Qwen3OmniVideosAndTheirSoundEqualItsProcessor) {
  const std::string dir =
      std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/qwen3_omni_data";
  auto model = ReadMediaModel(dir + "/config.json");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_FALSE(model->timestamps);
  EXPECT_EQ(model->videoPositionsPerSecond, 13);
  model->video.minPixels = 64;
  model->video.maxPixels = 1024;
  model->audioInVideo = true;
  auto expected = ParseJson(ReadText(dir + "/videos.json"));
  ASSERT_TRUE(expected.ok());
  std::istringstream lines(ReadText(dir + "/videos.jsonl"));
  std::string line;
  for (const Json &want : expected->items) {
    ASSERT_TRUE(std::getline(lines, line));
    MediaSample s;
    absl::Status st = EncodeMediaSample(line, dir, *G().tokenizer,
                                        ChatFormat::ChatML, -1, *model, s);
    ASSERT_TRUE(st.ok()) << st;
    // clip.mp4 has no sound track: a plain video; talk.mkv's 26 audio
    // tokens go among its two temporal patches' 12 each.
    ExpectEqualsGolden(s, want, &*model);
    ASSERT_EQ(s.images.size(), 1u);
    EXPECT_EQ(s.images[0].withAudio, !s.audios.empty());
  }
  MediaSample s;
  // Without audio_in_video the sound track is left out.
  model->audioInVideo = false;
  std::istringstream again(ReadText(dir + "/videos.jsonl"));
  std::getline(again, line);
  std::getline(again, line);
  ASSERT_TRUE(EncodeMediaSample(line, dir, *G().tokenizer, ChatFormat::ChatML,
                                -1, *model, s)
                  .ok());
  EXPECT_TRUE(s.audios.empty());
  EXPECT_FALSE(s.images[0].withAudio);
}

TEST(Multimodal, Qwen25OmniAudioInVideoEqualsItsProcessor) {
  const std::string dir =
      std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/omni_video";
  auto model = ReadMediaModel(std::string(VEOMNI_SOURCE_DIR) +
                              "/test/goldens/multimodal/omni.json");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->secondsPerChunk, 2);
  model->video.minPixels = 64;
  model->video.maxPixels = 1024;
  model->audioInVideo = true;
  auto expected = ParseJson(ReadText(dir + "/expected.json"));
  ASSERT_TRUE(expected.ok());
  std::string line = ReadText(dir + "/videos.jsonl");
  line = line.substr(0, line.find('\n'));
  MediaSample s;
  absl::Status st = EncodeMediaSample(line, dir, *G().tokenizer,
                                      ChatFormat::ChatML, -1, *model, s);
  ASSERT_TRUE(st.ok()) << st;
  // Two chunks of 50 positions: 24 video tokens (temporal patches 0 and 1),
  // 50 audio tokens, 24 more (patches 2 and 3), 50 more.
  ExpectEqualsGolden(s, *expected, &*model);
}

TEST(Multimodal, BadPartsNameTheMessageAndPart) {
  auto error = [](const std::string &line) {
    MediaSample s;
    absl::Status st = EncodeMediaSample(line, Dir(), *G().tokenizer,
                                        ChatFormat::ChatML, -1, G().model, s);
    return st.ok() ? std::string("ok") : std::string(st.message());
  };
  auto user = [](const std::string &part) {
    return "{\"messages\": [{\"role\": \"user\", \"content\": [" + part +
           "]}]}";
  };
  EXPECT_NE(error(user("{\"type\": \"image\", \"image\": \"gone.png\"}"))
                .find("message 0, part 0: "),
            std::string::npos);
  EXPECT_NE(error(user("{\"type\": \"image\", \"image\": \"gone.png\"}"))
                .find("gone.png"),
            std::string::npos);
  EXPECT_NE(error(user("{\"type\": \"audio\", \"audio\": \"small.png\"}"))
                .find("small.png: has no audio stream"),
            std::string::npos)
      << error(user("{\"type\": \"audio\", \"audio\": \"small.png\"}"));
  EXPECT_NE(error(user("{\"type\": \"3d\", \"mesh\": \"a.obj\"}"))
                .find("\"3d\" part is not supported"),
            std::string::npos);
  EXPECT_NE(error(user("{\"type\": \"video\", \"video\": \"small.png\"}"))
                .find("small.png: "),
            std::string::npos);
  EXPECT_NE(error(user("{\"type\": \"image\", \"url\": \"https://x/y.png\"}"))
                .find("remote files are not fetched"),
            std::string::npos);
  EXPECT_NE(error(user("{\"type\": \"image\"}")).find("needs its file"),
            std::string::npos);
  // A text model has no tower for them.
  MediaModel text;
  MediaSample s;
  absl::Status st =
      EncodeMediaSample(user("{\"type\": \"image\", \"image\": \"small.png\"}"),
                        Dir(), *G().tokenizer, ChatFormat::ChatML, -1, text, s);
  EXPECT_NE(st.message().find("the model has no vision tower"),
            std::string::npos)
      << st;
}

} // namespace
} // namespace veomni::rt

namespace veomni::rt {
namespace {

// Gemma 3 (tools/goldens/make_gemma3_data_golden.py): its chat template
// over content lists and Gemma3Processor's "\n\n" <start_of_image>
// <image_soft_token> x 4 <end_of_image> "\n\n" per image, tokenized in
// one pass; Gemma3ImageProcessorPil's whole images (bilinear to 32 x 32,
// mean and std 0.5); in a batch, positions counting up, token_type_ids on
// the image tokens, padding images onto the last token.
TEST(Multimodal, Gemma3SamplesEqualItsProcessor) {
  const std::string dir =
      std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/gemma3_data";
  auto model = ReadMediaModel(dir + "/config.json");
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(model->wholeImages);
  EXPECT_EQ(model->imageSize, 32);
  EXPECT_EQ(model->tokensPerImage, 4);
  auto tokenizer = Tokenizer::Load(dir + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto expected = ParseJson(ReadText(dir + "/expected.json"));
  ASSERT_TRUE(expected.ok());
  std::string line = ReadText(dir + "/samples.jsonl");
  line = line.substr(0, line.find('\n'));
  MediaSample s;
  absl::Status encoded = EncodeMediaSample(line, dir, **tokenizer,
                                           ChatFormat::Gemma, -1, *model, s);
  ASSERT_TRUE(encoded.ok()) << encoded;
  EXPECT_EQ(std::vector<int64_t>(s.ids.begin(), s.ids.end()),
            Ints(*FindField(*expected, "ids")));
  EXPECT_EQ(std::vector<int64_t>(s.trained.begin(), s.trained.end()),
            Ints(*FindField(*expected, "trained")));
  // The JPEG (50 x 30) and the PNG (40 x 24) are both resized: within
  // 1/255 of the range before normalising (PIL rounds in fixed point).
  std::vector<float> pixels = ReadF32(dir + "/pixels.f32");
  ASSERT_EQ(s.images.size(), 2u);
  for (const VisionPatches &image : s.images)
    ASSERT_EQ(image.values.size(), 3u * 32 * 32);
  for (float worst : WorstPixelErrors(s, pixels))
    EXPECT_LE(worst, 1.0f / 255 / 0.5f + 1e-6f);

  MediaBudget budget;
  budget.seqLen = 96;
  budget.patches = 3; // images: the third is padding
  MediaBatcher batcher(*model, budget);
  ASSERT_TRUE(batcher.Add(s));
  MediaBatch batch = batcher.Finish();
  const std::vector<int64_t> types =
      Ints(*FindField(*expected, "token_type_ids"));
  const auto &gotTypes = batch.ints["token_type_ids"];
  ASSERT_EQ(gotTypes.size(), 96u);
  for (size_t t = 0; t < 96; ++t)
    EXPECT_EQ(gotTypes[t], t < types.size() ? types[t] : 0) << t;
  const auto &positions = batch.ints["position_ids"];
  ASSERT_EQ(positions.size(), 96u);
  for (size_t t = 0; t < types.size(); ++t)
    EXPECT_EQ(positions[t], static_cast<int32_t>(t));
  const auto &slots = batch.ints["image_token_positions"];
  ASSERT_EQ(slots.size(), 12u);
  for (size_t k = 0; k < 8; ++k)
    EXPECT_EQ(types[slots[k]], 1) << k;
  for (size_t k = 8; k < 12; ++k)
    EXPECT_EQ(slots[k], 95) << "padding onto the last token";
  EXPECT_EQ(batch.floats["pixel_values"].size(), 3u * 3 * 32 * 32);
  EXPECT_EQ(batch.ints.count("vision_position_ids"), 0u);
  // A fourth image does not fit.
  MediaBudget one = budget;
  one.patches = 1;
  MediaBatcher tight(*model, one);
  EXPECT_NE(
      tight.Oversize(s).find("2 images, over the batch's 1 (data.images)"),
      std::string::npos)
      << tight.Oversize(s);

  // Videos are refused by name; Llama 3's format takes no images.
  MediaSample v;
  absl::Status video = EncodeMediaSample(
      R"({"messages": [{"role": "user", "content": [{"type": "video", "video": "clip.mp4"}]}, {"role": "assistant", "content": "?"}]})",
      dir, **tokenizer, ChatFormat::Gemma, -1, *model, v);
  EXPECT_NE(video.message().find("videos for gemma3 are not supported"),
            std::string::npos)
      << video;
}

TEST(Multimodal, Gemma3PanAndScanEqualsItsProcessor) {
  const std::string dir =
      std::string(VEOMNI_SOURCE_DIR) + "/test/goldens/gemma3_data";
  auto model = ReadMediaModel(dir + "/config.json");
  ASSERT_TRUE(model.ok()) << model.status();
  model->panAndScan = true;
  auto tokenizer = Tokenizer::Load(dir + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto expected = ParseJson(ReadText(dir + "/expected.json"));
  ASSERT_TRUE(expected.ok());
  const Json &want = *FindField(*expected, "pan");
  std::string line = ReadText(dir + "/pan.jsonl");
  line = line.substr(0, line.find('\n'));
  MediaSample s;
  absl::Status encoded = EncodeMediaSample(line, dir, **tokenizer,
                                           ChatFormat::Gemma, -1, *model, s);
  ASSERT_TRUE(encoded.ok()) << encoded;
  // The 800 x 300 picture and its three crops, in the processor's words.
  ExpectEqualsGolden(s, want);
  ASSERT_EQ(s.images.size(), 4u);
  for (float worst : WorstPixelErrors(s, ReadF32(dir + "/pan.f32")))
    EXPECT_LE(worst, 1.0f / 255 / 0.5f + 1e-6f);
  // Without it, the picture alone.
  model->panAndScan = false;
  MediaSample plain;
  ASSERT_TRUE(EncodeMediaSample(line, dir, **tokenizer, ChatFormat::Gemma, -1,
                                *model, plain)
                  .ok());
  EXPECT_EQ(plain.images.size(), 1u);

  // The crop boxes of other sizes, wide and tall, and none where the
  // picture is not elongated enough or a crop would be under 256.
  for (const Json &c : FindField(*expected, "crops")->items) {
    RgbImage image;
    image.height = static_cast<int64_t>(FindField(c, "height")->number);
    image.width = static_cast<int64_t>(FindField(c, "width")->number);
    image.pixels.resize(image.height * image.width * 3);
    for (size_t i = 0; i < image.pixels.size(); ++i)
      image.pixels[i] = static_cast<uint8_t>(i * 7 + i / 251);
    std::vector<RgbImage> crops = PanAndScanCrops(image);
    const Json &boxes = *FindField(c, "crops");
    ASSERT_EQ(crops.size(), boxes.items.size())
        << image.height << " x " << image.width;
    for (size_t k = 0; k < crops.size(); ++k) {
      std::vector<int64_t> box = Ints(boxes.items[k]); // top, left, h, w
      ASSERT_EQ(crops[k].height, box[2]);
      ASSERT_EQ(crops[k].width, box[3]);
      for (int64_t y = 0; y < box[2]; ++y)
        ASSERT_TRUE(std::equal(crops[k].pixels.begin() + y * box[3] * 3,
                               crops[k].pixels.begin() + (y + 1) * box[3] * 3,
                               image.pixels.begin() +
                                   ((box[0] + y) * image.width + box[1]) * 3))
            << "crop " << k << " row " << y;
    }
  }
}

} // namespace
} // namespace veomni::rt
