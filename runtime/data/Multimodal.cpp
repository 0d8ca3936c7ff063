//===- Multimodal.cpp - conversations with images and audio ---------------===//

#include "runtime/data/Multimodal.h"

#include "runtime/data/Media.h"
#include "runtime/executor/Executor.h"
#include "runtime/io/Json.h"
#include "runtime/support/Status.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace veomni::rt {
namespace {

const Json *Field(const Json *object, absl::string_view key) {
  return object && object->kind == Json::Object ? FindField(*object, key)
                                                : nullptr;
}

/// The first of `keys` that `object` (or its text_config) has as an
/// integer, else `fallback`.
int64_t IntOf(const Json *object, std::initializer_list<const char *> keys,
              int64_t fallback) {
  for (const Json *o : {object, Field(object, "text_config")})
    for (const char *k : keys)
      if (const Json *v = Field(o, k); v && v->kind == Json::Number)
        return static_cast<int64_t>(v->number);
  return fallback;
}

/// Steps a stride-2, kernel-3, padding-1 convolution leaves of `n`.
int64_t Halved(int64_t n) { return n > 0 ? (n - 1) / 2 + 1 : 0; }

} // namespace

int64_t MediaModel::AudioTokens(int64_t frames) const {
  // Qwen3-Omni: 13 a whole chunk, three halvings of the rest.
  if (qwen3Audio)
    return frames / audioChunk * 13 +
           Halved(Halved(Halved(frames % audioChunk)));
  // Whisper's: a stride-2 convolution, then stride-2 pooling.
  return ((frames - 1) / 2 + 1 - 2) / 2 + 1;
}

namespace {

/// Qwen2.5's window order of one image's merged patches: windows of
/// `side` x `side` merged patches in raster order, the patches of each in
/// raster order; `windows` gets each merged patch's window (from 0).
std::vector<int64_t> WindowIndex(const VisionPatches &p, int64_t merge,
                                 int64_t side, std::vector<int64_t> &windows) {
  const int64_t gh = p.h / merge, gw = p.w / merge;
  std::vector<int64_t> order;
  windows.clear();
  int64_t window = 0;
  for (int64_t t = 0; t < p.t; ++t)
    for (int64_t wy = 0; wy * side < gh; ++wy)
      for (int64_t wx = 0; wx * side < gw; ++wx, ++window)
        for (int64_t y = wy * side; y < std::min(gh, (wy + 1) * side); ++y)
          for (int64_t x = wx * side; x < std::min(gw, (wx + 1) * side); ++x) {
            order.push_back((t * gh + y) * gw + x);
            windows.push_back(window);
          }
  return order;
}

/// A media part's file, relative to the dataset's folder.
absl::StatusOr<std::string> MediaPath(const Json &part, absl::string_view type,
                                      const std::string &dir) {
  const Json *path = nullptr;
  const std::string own(type); // outlives the loop over the keys
  for (const char *key : {own.c_str(), "path", "url"})
    if (!path)
      if (const Json *v = Field(&part, key); v && v->kind == Json::String)
        path = v;
  if (!path)
    return absl::InvalidArgumentError(absl::StrCat(
        "a \"", type, "\" part needs its file as \"", type, "\" or \"path\""));
  absl::string_view p = path->text;
  if (absl::StartsWith(p, "http://") || absl::StartsWith(p, "https://"))
    return absl::InvalidArgumentError(absl::StrCat(
        "'", p, "': remote files are not fetched; download them first"));
  absl::ConsumePrefix(&p, "file://");
  if (p.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("a \"", type, "\" part names no file"));
  if (p.front() == '/' || dir.empty())
    return std::string(p);
  return absl::StrCat(dir, "/", p);
}

} // namespace

absl::StatusOr<MediaModel> ReadMediaModel(const std::string &config) {
  std::ifstream in(config, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in)
    return absl::NotFoundError(absl::StrCat(config, ": cannot read"));
  absl::StatusOr<Json> json = ParseJson(text.str());
  if (!json.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(config, ": ", json.status().message()));
  MediaModel m;
  const Json *root = &*json;
  if (const Json *t = Field(root, "model_type"); t && t->kind == Json::String)
    m.modelType = t->text;
  // Qwen2.5-Omni: the thinker holds the towers and the ids.
  const Json *top =
      Field(root, "thinker_config") ? Field(root, "thinker_config") : root;
  if (absl::EndsWith(m.modelType, "_thinker"))
    m.modelType.resize(m.modelType.size() - 8);
  const Json *vision = Field(top, "vision_config");
  const Json *audio = Field(top, "audio_config");
  m.vision = vision != nullptr;
  m.audio = audio != nullptr;
  auto bad = [&](absl::string_view field) {
    return absl::InvalidArgumentError(
        absl::StrCat(config, ": field '", field, "' is missing or invalid"));
  };
  if (m.modelType == "gemma3") {
    // Gemma3Config's and Gemma3ImageProcessor's: SigLIP's normalisation,
    // the tower's image size, 256 tokens an image by default.
    if (!m.vision || m.audio)
      return bad("vision_config");
    m.wholeImages = true;
    for (int c = 0; c < 3; ++c) {
      m.image.mean[c] = 0.5;
      m.image.stddev[c] = 0.5;
    }
    m.imageSize = IntOf(vision, {"image_size"}, 224);
    m.tokensPerImage = IntOf(root, {"mm_tokens_per_image"}, 256);
    m.channels = IntOf(vision, {"num_channels"}, 3);
    m.imageToken = IntOf(root, {"image_token_index", "image_token_id"}, 262144);
    m.visionStart = IntOf(root, {"boi_token_index"}, 255999);
    m.visionEnd = IntOf(root, {"eoi_token_index"}, 256000);
    if (m.imageSize < 1)
      return bad("vision_config.image_size");
    if (m.tokensPerImage < 1)
      return bad("mm_tokens_per_image");
    if (m.channels != 3)
      return bad("vision_config.num_channels (3: RGB)");
    if (m.imageToken < 0 || m.visionStart < 0 || m.visionEnd < 0)
      return bad("image_token_index");
    return m;
  }
  // Qwen3-VL's tower (Qwen3-Omni's too): learned positions, SigLIP's
  // normalisation, no window order.
  const bool qwen3 = m.modelType == "qwen3_vl" ||
                     m.modelType == "qwen3_vl_moe" ||
                     m.modelType == "qwen3_omni_moe";
  m.windowed = m.vision && m.modelType != "qwen2_vl" && !qwen3;
  if (m.vision) {
    m.image.patch = IntOf(vision, {"patch_size"}, qwen3 ? 16 : 14);
    if (qwen3) {
      // Qwen3-VL's processor: SigLIP's normalisation, not CLIP's.
      for (int c = 0; c < 3; ++c) {
        m.image.mean[c] = 0.5;
        m.image.stddev[c] = 0.5;
      }
      const int64_t n = IntOf(vision, {"num_position_embeddings"}, 2304);
      m.positionGrid = static_cast<int64_t>(std::llround(
          std::sqrt(static_cast<double>(std::max<int64_t>(n, 0)))));
      if (n < 1 || m.positionGrid * m.positionGrid != n)
        return bad("vision_config.num_position_embeddings (a square)");
    }
    m.image.merge = IntOf(vision, {"spatial_merge_size"}, 2);
    m.image.temporalPatch = IntOf(vision, {"temporal_patch_size"}, 2);
    m.channels = IntOf(vision, {"in_channels", "in_chans"}, 3);
    m.windowSize = IntOf(vision, {"window_size"}, 112);
    if (m.image.patch < 1 || m.image.merge < 1 || m.image.temporalPatch < 1)
      return bad("vision_config.patch_size");
    if (m.channels != 3)
      return bad("vision_config.in_channels (3: RGB)");
    if (m.windowed &&
        (m.windowSize < m.image.factor() || m.windowSize % m.image.factor()))
      return bad("vision_config.window_size");
    // Absent ids take transformers' defaults, Qwen's vocabulary's (a
    // config saved by transformers 5 leaves out the omni thinker's vision
    // start and end, which its get_rope_index still reads).
    m.videoToken = IntOf(top, {"video_token_id", "video_token_index"}, 151656);
    m.video = m.image;
    m.video.minPixels = 128 * 28 * 28;
    m.video.maxPixels = 28 * 28 * 768;
    if (m.modelType == "qwen2_5_vl")
      m.videoPositionsPerSecond = IntOf(vision, {"tokens_per_second"}, 4);
    else if (m.modelType == "qwen2_5_omni" || m.modelType == "qwen3_omni_moe")
      m.videoPositionsPerSecond = IntOf(top, {"position_id_per_seconds"}, 25);
    m.secondsPerChunk =
        static_cast<double>(IntOf(top, {"seconds_per_chunk"}, 2));
    if (m.secondsPerChunk <= 0)
      return bad("seconds_per_chunk");
    // Qwen3-VL's video processor (not Qwen3-Omni's, Qwen2-VL's).
    m.timestamps = qwen3 && m.modelType != "qwen3_omni_moe";
    m.sampling.spread = m.timestamps;
    m.imageToken = IntOf(top, {"image_token_id", "image_token_index"}, 151655);
    m.visionStart = IntOf(top, {"vision_start_token_id"}, 151652);
    m.visionEnd = IntOf(top, {"vision_end_token_id"}, 151653);
    if (m.imageToken < 0)
      return bad("image_token_id");
    if (m.visionStart < 0)
      return bad("vision_start_token_id");
    if (m.visionEnd < 0)
      return bad("vision_end_token_id");
  }
  if (m.audio) {
    m.features.mels = IntOf(audio, {"num_mel_bins"}, 128);
    m.audioChunk = 2 * IntOf(audio, {"n_window"}, 100);
    if (m.features.mels < 1)
      return bad("audio_config.num_mel_bins");
    if (m.audioChunk < 4 || m.audioChunk % 4)
      return bad("audio_config.n_window (a positive even number)");
    if (m.modelType == "qwen3_omni_moe") {
      // 13 features a 100-frame chunk is what transformers counts.
      m.qwen3Audio = true;
      if (IntOf(audio, {"n_window"}, 50) != 50)
        return bad("audio_config.n_window (50)");
      m.audioChunk = 100;
      const int64_t infer = IntOf(audio, {"n_window_infer"}, 800);
      if (infer < m.audioChunk || infer % m.audioChunk)
        return bad("audio_config.n_window_infer (a multiple of 100)");
      m.audioWindow = infer / m.audioChunk * 13;
    }
    m.audioToken = IntOf(top, {"audio_token_id", "audio_token_index"}, 151646);
    m.audioStart = IntOf(top, {"audio_start_token_id"}, 151647);
    m.audioEnd = IntOf(top, {"audio_end_token_id"}, 151648);
    if (m.audioToken < 0)
      return bad("audio_token_id");
    if (m.audioStart < 0)
      return bad("audio_start_token_id");
    if (m.audioEnd < 0)
      return bad("audio_end_token_id");
  }
  return m;
}

namespace {

/// The log-mel frames of `path`'s audio (a clip, or a video's sound
/// track), every frame kept: the tower's tokens are transformers' count of
/// them.
absl::StatusOr<LogMel> ClipFeatures(const std::string &path,
                                    const MediaModel &model) {
  VEOMNI_ASSIGN_OR_RETURN(
      std::vector<float> samples,
      DecodeAudio(path, static_cast<int>(model.features.sampleRate)));
  VEOMNI_ASSIGN_OR_RETURN(LogMel mel, WhisperLogMel(samples, model.features));
  if (mel.frames < 4)
    return absl::InvalidArgumentError("shorter than 4 feature frames (40 ms)");
  return mel;
}

/// The temporal position (from the block's start) of a video's temporal
/// patch t: t x its seconds x the model's positions a second, in f32.
float VideoTime(const VisionPatches &p, const MediaModel &model, int64_t t) {
  return static_cast<float>(t) *
         (static_cast<float>(p.secondsPerGrid) *
          static_cast<float>(model.videoPositionsPerSecond));
}

/// Qwen2.5-Omni's order of a video's tokens and its sound track's
/// `audioTokens`: chunks of seconds_per_chunk x position_id_per_seconds
/// positions (transformers' get_chunked_index over each kind's temporal
/// positions), per chunk its video tokens, then its audio tokens. Runs of
/// (video?, count) in order.
std::vector<std::pair<bool, int64_t>> ChunkedRuns(const VisionPatches &p,
                                                  int64_t audioTokens,
                                                  const MediaModel &model) {
  const int64_t perFrame = p.h * p.w / (model.image.merge * model.image.merge);
  const int64_t span = static_cast<int64_t>(model.videoPositionsPerSecond *
                                            model.secondsPerChunk);
  auto chunks = [&](int64_t n, auto time) {
    std::vector<int64_t> sizes;
    int64_t start = 0, current = 1;
    for (int64_t i = 0; i < n; ++i)
      if (time(i) >= current * span) {
        sizes.push_back(i - start);
        start = i;
        ++current;
      }
    sizes.push_back(n - start);
    return sizes;
  };
  std::vector<int64_t> video = chunks(p.t * perFrame, [&](int64_t i) {
    return static_cast<int64_t>(VideoTime(p, model, i / perFrame));
  });
  std::vector<int64_t> audio = chunks(audioTokens, [](int64_t i) { return i; });
  std::vector<std::pair<bool, int64_t>> runs;
  for (size_t j = 0; j < std::max(video.size(), audio.size()); ++j) {
    if (j < video.size())
      runs.push_back({true, video[j]});
    if (j < audio.size())
      runs.push_back({false, audio[j]});
  }
  return runs;
}

/// The omni processors' order of a video's tokens and its sound track's
/// `audioTokens`: Qwen2.5-Omni's chunks (ChunkedRuns), or Qwen3-Omni's
/// token by token, the next video token first while its temporal position
/// is at most the next audio token's index.
void InterleaveAudio(const VisionPatches &p, int64_t audioTokens,
                     const MediaModel &model, std::vector<int32_t> &ids) {
  if (!model.qwen3Audio) {
    for (auto [video, n] : ChunkedRuns(p, audioTokens, model))
      ids.insert(ids.end(), n, video ? model.videoToken : model.audioToken);
    return;
  }
  const int64_t perFrame = p.h * p.w / (model.image.merge * model.image.merge);
  const int64_t videoTokens = p.t * perFrame;
  int64_t v = 0, a = 0;
  while (v < videoTokens && a < audioTokens) {
    if (VideoTime(p, model, v / perFrame) <= static_cast<float>(a)) {
      ids.push_back(model.videoToken);
      ++v;
    } else {
      ids.push_back(model.audioToken);
      ++a;
    }
  }
  ids.insert(ids.end(), videoTokens - v, model.videoToken);
  ids.insert(ids.end(), audioTokens - a, model.audioToken);
}

/// Qwen3-VL's video (Qwen3VLVideoProcessor with cap_pixels_per_frame, and
/// Qwen3VLProcessor's prompt): the frames sized together, each temporal
/// patch a block of its own after the text "<T seconds>", T the mean time
/// of its frames; the blocks go to `out.images` as images do.
absl::StatusOr<std::vector<ChatPart>>
TimestampedFrames(const DecodedVideo &video, const MediaModel &model,
                  MediaSample &out) {
  const int64_t n = static_cast<int64_t>(video.frames.size());
  if (n == 0 || !(video.fps > 0))
    return absl::InvalidArgumentError("a video without frames or a frame rate");
  VEOMNI_ASSIGN_OR_RETURN(auto size,
                          VideoSmartResize(n, video.frames[0].height,
                                           video.frames[0].width, model.video,
                                           model.videoTotalPixels));
  VEOMNI_ASSIGN_OR_RETURN(VisionPatches all,
                          VideoPatches(video.frames, size, model.video));
  const int64_t tp = model.image.temporalPatch;
  std::vector<int64_t> indices = video.indices;
  while (indices.size() % tp)
    indices.push_back(indices.back());
  const int64_t block = all.h * all.w;
  std::vector<ChatPart> parts;
  for (int64_t t = 0; t < all.t; ++t) {
    const double seconds = (double(indices[t * tp]) / video.fps +
                            double(indices[t * tp + tp - 1]) / video.fps) /
                           2;
    VisionPatches frame;
    frame.t = 1;
    frame.h = all.h;
    frame.w = all.w;
    frame.rowSize = all.rowSize;
    frame.values.assign(all.values.begin() + t * block * all.rowSize,
                        all.values.begin() + (t + 1) * block * all.rowSize);
    ChatPart run;
    run.before = absl::StrFormat("<%.1f seconds>", seconds);
    run.ids.push_back(model.visionStart);
    run.ids.insert(run.ids.end(), frame.Tokens(model.image), model.videoToken);
    run.ids.push_back(model.visionEnd);
    parts.push_back(std::move(run));
    out.images.push_back(std::move(frame));
  }
  return parts;
}

} // namespace

absl::Status EncodeMediaSample(absl::string_view line, const std::string &dir,
                               const Tokenizer &tokenizer, ChatFormat chat,
                               int32_t eos, const MediaModel &model,
                               MediaSample &out) {
  out = MediaSample();
  VEOMNI_ASSIGN_OR_RETURN(Json j, ParseJson(line));
  VEOMNI_ASSIGN_OR_RETURN(bool text, EncodeTextLine(j, tokenizer, eos, out));
  if (text)
    return absl::OkStatus();
  // Each media part: its file decoded and processed, its placeholders.
  PartReader read =
      [&](const Json &part,
          const std::string &type) -> absl::StatusOr<std::vector<ChatPart>> {
    if (type != "image" && type != "audio" && type != "video")
      return absl::UnimplementedError(
          absl::StrCat("a \"", type,
                       "\" part is not supported (text, image, video and "
                       "audio are)"));
    VEOMNI_ASSIGN_OR_RETURN(std::string path, MediaPath(part, type, dir));
    auto media = [&](const absl::Status &s) {
      return absl::Status(s.code(),
                          absl::StrCat(type, " ", path, ": ", s.message()));
    };
    ChatPart run;
    if (type == "video") {
      if (model.wholeImages)
        return absl::UnimplementedError(
            absl::StrCat("videos for ", model.modelType,
                         " are not supported (images only)"));
      if (!model.vision || model.videoToken < 0)
        return absl::InvalidArgumentError(
            "a video, and the model config names no video_token_id");
      // (The decoders' errors name the file.)
      VEOMNI_ASSIGN_OR_RETURN(DecodedVideo video,
                              DecodeVideo(path, model.sampling));
      const int64_t n = static_cast<int64_t>(video.frames.size());
      if (model.timestamps) {
        absl::StatusOr<std::vector<ChatPart>> frames =
            TimestampedFrames(video, model, out);
        if (!frames.ok())
          return media(frames.status());
        return frames;
      }
      // A frame's share of the video's pixel budget.
      VisionConfig frame = model.video;
      frame.maxPixels = std::max<int64_t>(
          std::min<int64_t>(frame.maxPixels, model.videoTotalPixels *
                                                 model.sampling.frameFactor /
                                                 std::max<int64_t>(n, 1)),
          static_cast<int64_t>(frame.minPixels * 1.05));
      absl::StatusOr<VisionPatches> patches =
          Qwen2VLVideoPatches(video.frames, frame);
      if (!patches.ok())
        return media(patches.status());
      patches->secondsPerGrid =
          double(model.image.temporalPatch) / model.sampling.fps;
      run.ids.push_back(model.visionStart);
      if (model.audioInVideo && model.audio && HasAudioStream(path)) {
        // Its sound track's tokens among its own, by time.
        absl::StatusOr<LogMel> mel = ClipFeatures(path, model);
        if (!mel.ok())
          return media(mel.status());
        patches->withAudio = true;
        run.ids.push_back(model.audioStart);
        InterleaveAudio(*patches, model.AudioTokens(mel->frames), model,
                        run.ids);
        run.ids.push_back(model.audioEnd);
        out.images.push_back(*std::move(patches));
        out.audios.push_back(*std::move(mel));
      } else {
        run.ids.insert(run.ids.end(), patches->Tokens(model.image),
                       model.videoToken);
        out.images.push_back(*std::move(patches));
      }
      run.ids.push_back(model.visionEnd);
    } else if (type == "image") {
      if (!model.vision)
        return absl::InvalidArgumentError(
            "an image, and the model has no vision tower");
      VEOMNI_ASSIGN_OR_RETURN(RgbImage rgb, DecodeImage(path));
      if (model.wholeImages) {
        std::vector<RgbImage> crops;
        if (model.panAndScan)
          crops = PanAndScanCrops(rgb);
        std::vector<ChatPart> runs;
        for (size_t k = 0; k <= crops.size(); ++k) {
          absl::StatusOr<VisionPatches> image = WholeImage(
              k == 0 ? rgb : crops[k - 1], model.imageSize, model.image);
          if (!image.ok())
            return media(image.status());
          ChatPart whole;
          whole.ids.push_back(model.visionStart);
          whole.ids.insert(whole.ids.end(), model.tokensPerImage,
                           model.imageToken);
          whole.ids.push_back(model.visionEnd);
          whole.around = "\n\n";
          if (!crops.empty())
            whole.before = k == 0   ? "Here is the original image "
                           : k == 1 ? " and here are some crops to help you "
                                      "see better "
                                    : " ";
          out.images.push_back(*std::move(image));
          runs.push_back(std::move(whole));
        }
        return runs;
      }
      absl::StatusOr<VisionPatches> patches =
          Qwen2VLPatches(rgb.pixels, rgb.height, rgb.width, model.image);
      if (!patches.ok())
        return media(patches.status());
      run.ids.push_back(model.visionStart);
      run.ids.insert(run.ids.end(), patches->Tokens(model.image),
                     model.imageToken);
      run.ids.push_back(model.visionEnd);
      out.images.push_back(*std::move(patches));
    } else {
      if (!model.audio)
        return absl::InvalidArgumentError(
            "audio, and the model has no audio tower");
      absl::StatusOr<LogMel> mel = ClipFeatures(path, model);
      if (!mel.ok())
        return media(mel.status());
      run.ids.push_back(model.audioStart);
      run.ids.insert(run.ids.end(), model.AudioTokens(mel->frames),
                     model.audioToken);
      run.ids.push_back(model.audioEnd);
      out.audios.push_back(*std::move(mel));
    }
    return std::vector<ChatPart>{std::move(run)};
  };
  return EncodeConversation(j, tokenizer, chat, &read, out);
}

std::vector<std::vector<int32_t>> MultimodalPositions(const MediaSample &s,
                                                      const MediaModel &model) {
  std::vector<std::vector<int32_t>> pos(3, std::vector<int32_t>(s.ids.size()));
  const int64_t merge = model.image.merge;
  int64_t next = 0; // the position of the next text token
  size_t image = 0, audio = 0;
  for (size_t i = 0; i < s.ids.size();) {
    if (model.vision &&
        (s.ids[i] == model.imageToken ||
         (model.videoToken >= 0 && s.ids[i] == model.videoToken)) &&
        image < s.images.size()) {
      const VisionPatches &p = s.images[image++];
      const int64_t gh = p.h / merge, gw = p.w / merge;
      if (p.withAudio && audio < s.audios.size() && !model.qwen3Audio &&
          i >= 2) {
        // Qwen2.5-Omni's audio in video: its two start tokens share one
        // position, the frames (time truncated) and the clip count from
        // the next, in its chunks' order; its two end tokens share one
        // past the largest position of the last chunk, as its
        // get_rope_index lays them out.
        const int64_t clip = model.AudioTokens(s.audios[audio++].frames);
        for (int d = 0; d < 3; ++d)
          pos[d][i - 1] = pos[d][i - 2];
        const int64_t start = pos[0][i - 2] + 1;
        const int64_t perFrame = gh * gw;
        int64_t v = 0, a = 0, top = start;
        for (auto [video, n] : ChunkedRuns(p, clip, model)) {
          top = start;
          for (int64_t k = 0; k < n; ++k, ++i) {
            int64_t at[3];
            if (video) {
              const int64_t t = v / perFrame, y = v / gw % gh, x = v % gw;
              at[0] = start + static_cast<int64_t>(VideoTime(p, model, t));
              at[1] = start + y;
              at[2] = start + x;
              ++v;
            } else {
              at[0] = at[1] = at[2] = start + a++;
            }
            for (int d = 0; d < 3; ++d) {
              pos[d][i] = static_cast<int32_t>(at[d]);
              top = std::max(top, at[d]);
            }
          }
        }
        for (int e = 0; e < 2 && i < s.ids.size(); ++e, ++i)
          for (int d = 0; d < 3; ++d)
            pos[d][i] = static_cast<int32_t>(top + 1);
        next = top + 2;
        continue;
      }
      if (p.withAudio && audio < s.audios.size()) {
        // Qwen3-Omni's audio in video: the frames' positions (time in
        // f32, kept fractional until stored) and the clip's counting up
        // from the block's start, merged as its get_rope_index merges them
        // (the processor's token order); the text after goes on from one
        // past the largest position of the last run it appends: the rest
        // of the frames or of the clip.
        const int64_t clip = model.AudioTokens(s.audios[audio++].frames);
        const int64_t perFrame = gh * gw, frames = p.t * perFrame;
        const float start = static_cast<float>(next);
        auto frameAt = [&](int64_t v, int d) {
          const int64_t t = v / perFrame, y = v / gw % gh, x = v % gw;
          return start + (d == 0   ? VideoTime(p, model, t)
                          : d == 1 ? static_cast<float>(y)
                                   : static_cast<float>(x));
        };
        int64_t v = 0, a = 0;
        float top = start;
        auto put = [&](bool isVideo) {
          for (int d = 0; d < 3; ++d) {
            const float value = isVideo ? frameAt(v, d) : start + float(a);
            pos[d][i] = static_cast<int32_t>(value);
            top = std::max(top, value);
          }
          ++(isVideo ? v : a);
          ++i;
        };
        while (v < frames && a < clip)
          put(frameAt(v, 0) <= start + float(a));
        top = start; // the last run's largest
        while (v < frames)
          put(true);
        while (a < clip)
          put(false);
        next = static_cast<int64_t>(top + 1.f);
        continue;
      }
      // A video's temporal patches step by their seconds (as f32, as
      // torch multiplies them) times the model's positions a second.
      const bool video = p.secondsPerGrid > 0;
      const float step =
          !video ? 0.f
          : model.videoPositionsPerSecond > 0
              ? static_cast<float>(p.secondsPerGrid) *
                    static_cast<float>(model.videoPositionsPerSecond)
              : 1.f;
      int64_t top = next;
      for (int64_t t = 0; t < p.t; ++t) {
        const int64_t time =
            next + static_cast<int64_t>(static_cast<float>(t) * step);
        for (int64_t y = 0; y < gh; ++y)
          for (int64_t x = 0; x < gw; ++x, ++i) {
            pos[0][i] = static_cast<int32_t>(time);
            pos[1][i] = static_cast<int32_t>(next + y);
            pos[2][i] = static_cast<int32_t>(next + x);
            top = std::max({top, time, next + y, next + x});
          }
      }
      next = model.modelType == "qwen2_5_omni" ||
                     model.modelType == "qwen3_omni_moe"
                 ? top + 1
                 : next + std::max(gh, gw);
      continue;
    }
    if (model.audio && s.ids[i] == model.audioToken &&
        audio < s.audios.size()) {
      const int64_t n = model.AudioTokens(s.audios[audio++].frames);
      for (int64_t k = 0; k < n; ++k, ++i)
        for (int d = 0; d < 3; ++d)
          pos[d][i] = static_cast<int32_t>(next + k);
      next += n;
      continue;
    }
    for (int d = 0; d < 3; ++d)
      pos[d][i] = static_cast<int32_t>(next);
    ++next;
    ++i;
  }
  return pos;
}

int64_t MediaBatcher::AlignedFrames(int64_t frames) const {
  // The audio tower convolves input_features in chunks of min(F, 2
  // n_window) frames, each zero-padded as transformers pads each chunk of a
  // clip: a clip starts on a chunk and its last chunk's rest is padding.
  const int64_t grid =
      std::max<int64_t>(1, std::min(budget_.frames, model_.audioChunk));
  return (frames + grid - 1) / grid * grid;
}

std::string MediaBatcher::Oversize(const MediaSample &s) const {
  // The last token of the batch is kept for the padding's features.
  const int64_t room = budget_.rows == 1 ? budget_.seqLen - 1 : budget_.seqLen;
  int64_t patches = 0, frames = 0;
  for (const VisionPatches &p : s.images)
    patches += p.t * p.h * p.w;
  for (const LogMel &m : s.audios)
    frames += AlignedFrames(m.frames);
  if (static_cast<int64_t>(s.ids.size()) > room)
    return absl::StrCat(s.ids.size(), " tokens, over the ", room,
                        " a row holds (data.seq_len)");
  if (patches > budget_.patches)
    return model_.wholeImages
               ? absl::StrCat(patches, " images, over the batch's ",
                              budget_.patches, " (data.images)")
               : absl::StrCat(patches, " image patches, over the batch's ",
                              budget_.patches, " (data.image_patches)");
  if (frames > budget_.frames)
    return absl::StrCat(frames, " audio frames, over the batch's ",
                        budget_.frames, " (data.audio_frames)");
  return "";
}

bool MediaBatcher::Add(const MediaSample &s) {
  int64_t patches = 0, frames = 0;
  for (const VisionPatches &p : s.images)
    patches += p.t * p.h * p.w;
  for (const LogMel &m : s.audios)
    frames += AlignedFrames(m.frames);
  if (patches_ + patches > budget_.patches || frames_ + frames > budget_.frames)
    return false;
  const int64_t n = static_cast<int64_t>(s.ids.size());
  auto room = [&](int64_t row, int64_t used) {
    return budget_.seqLen - used - (row == budget_.rows - 1 ? 1 : 0);
  };
  int64_t row = row_, used = used_;
  if (n > room(row, used)) {
    ++row;
    used = 0;
    if (row >= budget_.rows || n > room(row, used))
      return false;
  }
  row_ = row;
  where_.push_back({row, used});
  used_ = used + n;
  patches_ += patches;
  frames_ += frames;
  samples_.push_back(s);
  return true;
}

namespace {

/// One axis of transformers' bilinear resampling (align_corners) of a
/// `side`-long grid to `size` positions, at position `index`: the two taps
/// and their weights, in f32 as torch computes them.
void BilinearTaps(int64_t index, int64_t size, int64_t side, int64_t taps[2],
                  float weights[2]) {
  const float src = static_cast<float>(index) * static_cast<float>(side - 1) /
                    static_cast<float>(std::max<int64_t>(size - 1, 1));
  const float floor = std::floor(src);
  for (int k = 0; k < 2; ++k) {
    taps[k] = std::clamp<int64_t>(static_cast<int64_t>(floor) + k, 0, side - 1);
    weights[k] =
        std::max(0.f, 1.f - std::fabs(src - floor - static_cast<float>(k)));
  }
}

} // namespace

/// Writes clip `m`'s log-mel frames into `features` ([mels, frames]
/// row-major) from frame `at` on.
static void PlaceClip(const LogMel &m, int64_t frames, int64_t at,
                      std::vector<float> &features) {
  for (int64_t r = 0; r < m.mels; ++r)
    std::copy_n(m.values.begin() + r * m.frames, m.frames,
                features.begin() + r * frames + at);
}

MediaBatch MediaBatcher::Finish() {
  const int64_t rows = budget_.rows, seq = budget_.seqLen;
  const int64_t tokens = rows * seq, sink = tokens - 1;
  const int64_t merge = model_.image.merge, unit = merge * merge;
  MediaBatch b;
  b.samples = static_cast<int64_t>(samples_.size());
  std::vector<int32_t> &ids = b.ints["input_ids"];
  std::vector<int32_t> &labels = b.ints["labels"];
  std::vector<int32_t> &segments = b.ints["segment_ids"];
  std::vector<int32_t> &positions = b.ints["position_ids"];
  // Gemma 3's positions count up ([B, S]); the Qwen families' are
  // multimodal ([3, B, S]).
  const int planes = model_.wholeImages ? 1 : 3;
  ids.assign(tokens, 0);
  labels.assign(tokens, -100);
  segments.assign(tokens, -1);
  positions.assign(planes * tokens, 0);
  std::vector<int32_t> imageSlots, audioSlots; // flat token indices
  for (size_t k = 0; k < samples_.size(); ++k) {
    const MediaSample &s = samples_[k];
    const auto [row, at] = where_[k];
    const int64_t base = row * seq + at;
    // Its segment: one more than the row's samples before it.
    int32_t segment = 0;
    for (size_t j = 0; j < k; ++j)
      segment += where_[j].first == row;
    std::vector<std::vector<int32_t>> pos;
    if (!model_.wholeImages)
      pos = MultimodalPositions(s, model_);
    for (size_t t = 0; t < s.ids.size(); ++t) {
      ids[base + t] = s.ids[t];
      segments[base + t] = segment;
      for (int d = 0; d < planes; ++d)
        positions[d * tokens + base + t] =
            model_.wholeImages ? static_cast<int32_t>(t) : pos[d][t];
      if (t + 1 < s.ids.size() && s.trained[t + 1])
        labels[base + t] = s.ids[t + 1];
      if (model_.vision &&
          (s.ids[t] == model_.imageToken ||
           (model_.videoToken >= 0 && s.ids[t] == model_.videoToken)))
        imageSlots.push_back(static_cast<int32_t>(base + t));
      if (model_.audio && s.ids[t] == model_.audioToken)
        audioSlots.push_back(static_cast<int32_t>(base + t));
    }
  }
  // Padding: per row, one segment after its samples, positions from 0.
  for (int64_t r = 0; r < rows; ++r) {
    int32_t segment = 0, position = 0;
    for (int64_t t = 0; t < seq; ++t)
      segment = std::max(segment, segments[r * seq + t] + 1);
    for (int64_t t = 0; t < seq; ++t) {
      int64_t i = r * seq + t;
      if (segments[i] >= 0)
        continue;
      segments[i] = segment;
      for (int d = 0; d < planes; ++d)
        positions[d * tokens + i] = position;
      ++position;
    }
  }

  if (model_.wholeImages) {
    // Gemma 3: the images in order, the rest zeros whose features land on
    // the batch's last token; token_type_ids 1 on the image tokens.
    const int64_t N = budget_.patches, T = model_.tokensPerImage;
    const int64_t size = 3 * model_.imageSize * model_.imageSize;
    std::vector<float> &pixels = b.floats["pixel_values"];
    pixels.assign(N * size, 0.f);
    std::vector<int32_t> &slots = b.ints["image_token_positions"];
    slots.assign(N * T, static_cast<int32_t>(sink));
    std::vector<int32_t> &types = b.ints["token_type_ids"];
    types.assign(tokens, 0);
    for (int32_t slot : imageSlots)
      types[slot] = 1;
    int64_t at = 0;
    for (const MediaSample &s : samples_)
      for (const VisionPatches &p : s.images) {
        std::copy(p.values.begin(), p.values.end(), pixels.begin() + at * size);
        ++at;
      }
    std::copy(imageSlots.begin(), imageSlots.end(), slots.begin());
  } else if (model_.vision && budget_.patches > 0) {
    const int64_t P = budget_.patches;
    const int64_t rowSize = model_.channels * model_.image.temporalPatch *
                            model_.image.patch * model_.image.patch;
    std::vector<float> &pixels = b.floats["pixel_values"];
    pixels.assign(P * rowSize, 0.f);
    std::vector<int32_t> &vpos = b.ints["vision_position_ids"];
    vpos.assign(2 * P, 0);
    std::vector<int32_t> &vseg = b.ints["vision_segment_ids"];
    vseg.assign(P, 0);
    std::vector<int32_t> &wseg = b.ints["vision_window_segment_ids"];
    wseg.assign(P, 0);
    std::vector<int32_t> &slots = b.ints["image_token_positions"];
    slots.assign(P / unit, static_cast<int32_t>(sink));
    // Qwen3-VL: each patch's 4 taps into the learned position grid.
    const int64_t grid = model_.positionGrid;
    std::vector<int32_t> *taps =
        grid > 0 ? &b.ints["vision_pos_embed_ids"] : nullptr;
    std::vector<float> *tapWeights =
        grid > 0 ? &b.floats["vision_pos_embed_weights"] : nullptr;
    if (grid > 0) {
      taps->assign(4 * P, 0);
      tapWeights->assign(4 * P, 0.f);
    }
    int64_t at = 0, frame = 0, window = 0, slot = 0;
    const int64_t side = model_.windowSize / model_.image.factor();
    for (const MediaSample &s : samples_)
      for (const VisionPatches &p : s.images) {
        const int64_t gh = p.h / merge, gw = p.w / merge;
        std::vector<int64_t> windows;
        std::vector<int64_t> order = model_.windowed
                                         ? WindowIndex(p, merge, side, windows)
                                         : std::vector<int64_t>();
        if (!model_.windowed)
          for (int64_t m = 0; m < p.t * gh * gw; ++m) {
            order.push_back(m);
            windows.push_back(0);
          }
        for (size_t j = 0; j < order.size(); ++j) {
          const int64_t m = order[j]; // a merged patch: frame, y, x
          const int64_t t = m / (gh * gw), y = m / gw % gh, x = m % gw;
          for (int64_t u = 0; u < unit; ++u, ++at) {
            std::copy_n(p.values.begin() + (m * unit + u) * rowSize, rowSize,
                        pixels.begin() + at * rowSize);
            vpos[at] = static_cast<int32_t>(y * merge + u / merge);
            vpos[P + at] = static_cast<int32_t>(x * merge + u % merge);
            if (grid > 0) {
              int64_t ht[2], wt[2];
              float hw[2], ww[2];
              BilinearTaps(vpos[at], p.h, grid, ht, hw);
              BilinearTaps(vpos[P + at], p.w, grid, wt, ww);
              for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) {
                  (*taps)[4 * at + 2 * i + j] =
                      static_cast<int32_t>(ht[i] * grid + wt[j]);
                  (*tapWeights)[4 * at + 2 * i + j] = hw[i] * ww[j];
                }
            }
            vseg[at] = static_cast<int32_t>(frame + t);
            wseg[at] = static_cast<int32_t>(window + windows[j]);
          }
          slots[slot + static_cast<int64_t>(j)] = imageSlots[slot + m];
        }
        slot += static_cast<int64_t>(order.size());
        frame += p.t;
        window += order.empty() ? 0 : windows.back() + 1;
      }
    for (; at < P; ++at) { // padding: a segment and a window of its own
      vseg[at] = static_cast<int32_t>(frame);
      wseg[at] = static_cast<int32_t>(window);
    }
    if (!model_.windowed)
      b.ints.erase("vision_window_segment_ids");
  }

  if (model_.audio && model_.qwen3Audio && budget_.frames > 0) {
    // Qwen3-Omni: each clip from a chunk's start, its last chunk's rest
    // masked; its features in attention windows of audioWindow, the masked
    // steps and the batch's rest a segment of their own, onto the last
    // token.
    const int64_t F = budget_.frames, mels = model_.features.mels;
    const int64_t chunk = std::min(F, model_.audioChunk);
    const int64_t perChunk = Halved(Halved(Halved(chunk)));
    const int64_t steps = F / chunk * perChunk;
    std::vector<float> &features = b.floats["input_features"];
    features.assign(mels * F, 0.f);
    std::vector<float> &mask = b.floats["audio_frame_mask"];
    mask.assign(F, 0.f);
    std::vector<int32_t> &aseg = b.ints["audio_segment_ids"];
    aseg.assign(steps, 0);
    std::vector<int32_t> &slots = b.ints["audio_token_positions"];
    slots.assign(steps, static_cast<int32_t>(sink));
    int64_t at = 0, segment = 0, slot = 0;
    for (const MediaSample &s : samples_)
      for (const LogMel &m : s.audios) {
        PlaceClip(m, F, at, features);
        const int64_t aligned = AlignedFrames(m.frames);
        // As transformers computes a clip on its own: a clip of one chunk
        // or less is convolved at its length (cut after it), a longer one's
        // last chunk zero-padded to a whole chunk (not cut).
        std::fill_n(mask.begin() + at, m.frames > chunk ? aligned : m.frames,
                    1.f);
        const int64_t first = at / chunk * perChunk;
        const int64_t real = model_.AudioTokens(m.frames);
        const int64_t all = aligned / chunk * perChunk;
        const int64_t windows =
            (real + model_.audioWindow - 1) / model_.audioWindow;
        for (int64_t k = 0; k < all; ++k)
          aseg[first + k] = static_cast<int32_t>(
              segment + (k < real ? k / model_.audioWindow : windows));
        segment += windows + (real < all ? 1 : 0);
        for (int64_t k = 0; k < real; ++k, ++slot)
          slots[first + k] = audioSlots[slot];
        at += aligned;
      }
    for (int64_t k = at / chunk * perChunk; k < steps; ++k)
      aseg[k] = static_cast<int32_t>(segment); // the rest: its own segment
  } else if (model_.audio && budget_.frames > 0) {
    const int64_t F = budget_.frames, mels = model_.features.mels;
    std::vector<float> &features = b.floats["input_features"];
    features.assign(mels * F, 0.f);
    std::vector<int32_t> &apos = b.ints["audio_position_ids"];
    apos.assign(F / 2, 0);
    std::vector<int32_t> &aseg = b.ints["audio_segment_ids"];
    aseg.assign(F / 2, 0);
    std::vector<int32_t> &slots = b.ints["audio_token_positions"];
    slots.assign(F / 4, static_cast<int32_t>(sink));
    int64_t at = 0, segment = 0, slot = 0;
    const int64_t steps = model_.audioChunk / 2; // post-conv steps a chunk
    // Steps [from, to) of the batch: real ones in attention chunks from
    // the clip's start, the rest one segment of their own.
    auto place = [&](int64_t from, int64_t real, int64_t to) {
      for (int64_t k = 0; from + k < to; ++k) {
        apos[from + k] = static_cast<int32_t>(k % steps);
        aseg[from + k] = static_cast<int32_t>(
            k < real ? segment + k / steps
                     : segment + (real + steps - 1) / steps);
      }
      segment += (real + steps - 1) / steps + (from + real < to ? 1 : 0);
    };
    for (const MediaSample &s : samples_)
      for (const LogMel &m : s.audios) {
        PlaceClip(m, F, at, features);
        const int64_t aligned = AlignedFrames(m.frames);
        place(at / 2, (m.frames + 1) / 2, (at + aligned) / 2);
        // Its pooled tokens onto its placeholders; its padding's onto the
        // batch's last token.
        for (int64_t k = 0; k < model_.AudioTokens(m.frames); ++k, ++slot)
          slots[at / 4 + k] = audioSlots[slot];
        at += aligned;
      }
    if (at < F)
      place(at / 2, 0, F / 2); // the batch's rest: a segment of its own
  }

  samples_.clear();
  where_.clear();
  row_ = used_ = patches_ = frames_ = 0;
  return b;
}

absl::StatusOr<MediaBatch> MediaPacker::Next() {
  while (true) {
    if (!hasPending_) {
      start_ = stream_.Position();
      VEOMNI_RETURN_IF_ERROR(stream_.Next(pending_));
      hasPending_ = true;
    }
    if (std::string why = batcher_.Oversize(pending_); !why.empty()) {
      const int64_t room =
          budget_.rows == 1 ? budget_.seqLen - 1 : budget_.seqLen;
      if (truncate_ && pending_.images.empty() && pending_.audios.empty() &&
          static_cast<int64_t>(pending_.ids.size()) > room) {
        pending_.ids.resize(room);
        pending_.trained.resize(room);
        ++truncated_;
      } else {
        if (oversized_.count++ == 0)
          oversized_.first = why;
        hasPending_ = false;
        // A whole pass of every source without a sample that fits.
        std::vector<uint64_t> epochs;
        for (size_t i = 0; i < stream_.sources(); ++i)
          epochs.push_back(stream_.source(i).position().epoch);
        if (streak_.empty())
          streak_ = epochs;
        bool wrapped = true;
        for (size_t i = 0; i < epochs.size(); ++i)
          wrapped = wrapped && epochs[i] >= streak_[i] + 2;
        if (wrapped)
          return absl::InvalidArgumentError(absl::StrCat(
              "no sample of a whole pass over the data fits the batch (",
              oversized_.count, " left out; the first: ", oversized_.first,
              ")"));
        continue;
      }
    }
    streak_.clear();
    if (batcher_.Add(pending_)) {
      hasPending_ = false;
      continue;
    }
    return batcher_.Finish(); // full: pending_ opens the next one
  }
}

std::string MediaPacker::Position() const {
  return hasPending_ ? start_ : stream_.Position();
}

absl::Status MediaPacker::Restore(const std::string &position) {
  VEOMNI_RETURN_IF_ERROR(stream_.Restore(position));
  hasPending_ = false;
  batcher_.Finish(); // nothing half-built survives
  return absl::OkStatus();
}

absl::StatusOr<MediaBudget> MediaBudgetOf(const Executor &executor,
                                          const MediaModel &model) {
  const Program &p = executor.program();
  MediaBudget budget;
  const ArgumentDesc *ids = p.FindArgument("input_ids");
  if (!ids || executor.GlobalShape(ids->buffer).size() != 2)
    return absl::InvalidArgumentError(
        "the program has no input_ids [batch, seq_len] input");
  budget.rows = executor.GlobalShape(ids->buffer)[0];
  budget.seqLen = executor.GlobalShape(ids->buffer)[1];
  if (const ArgumentDesc *px = p.FindArgument("pixel_values");
      px && model.wholeImages) {
    const Shape &s = executor.GlobalShape(px->buffer);
    if (s.size() != 4 || s[1] != 3 || s[2] != model.imageSize ||
        s[3] != model.imageSize)
      return absl::InvalidArgumentError(
          absl::StrCat("the program's pixel_values is not [images, 3, ",
                       model.imageSize, ", ", model.imageSize,
                       "] as the model config's vision tower takes "
                       "them"));
    budget.patches = s[0];
  } else if (px) {
    const Shape &s = executor.GlobalShape(px->buffer);
    const int64_t row = model.channels * model.image.temporalPatch *
                        model.image.patch * model.image.patch;
    if (!model.vision || s.size() != 2 || s[1] != row)
      return absl::InvalidArgumentError(
          absl::StrCat("the program's pixel_values is not [patches, ", row,
                       "] as the model config's vision tower makes them"));
    budget.patches = s[0];
  }
  if (const ArgumentDesc *f = p.FindArgument("input_features")) {
    const Shape &s = executor.GlobalShape(f->buffer);
    if (!model.audio || s.size() != 3 || s[1] != model.features.mels)
      return absl::InvalidArgumentError(absl::StrCat(
          "the program's input_features is not [1, ", model.features.mels,
          ", frames] as the model config's audio tower takes them"));
    budget.frames = s[2];
  }
  return budget;
}

absl::Status FillMediaBatch(Executor &executor, const MediaBatch &batch) {
  const Program &p = executor.program();
  for (const ArgumentDesc &a : p.arguments) {
    if (!IsBatchInput(a))
      continue;
    auto ints = batch.ints.find(a.name);
    auto floats = batch.floats.find(a.name);
    if (ints == batch.ints.end() && floats == batch.floats.end())
      return absl::InvalidArgumentError(
          absl::StrCat("the program needs input '", a.name,
                       "', which the conversations' batches do not carry"));
    const int64_t size = ints != batch.ints.end()
                             ? static_cast<int64_t>(ints->second.size())
                             : static_cast<int64_t>(floats->second.size());
    VEOMNI_RETURN_IF_ERROR(
        executor.FillGlobal(a.buffer, [&](const TensorView &v) -> absl::Status {
          if (v.numel() != size)
            return absl::InvalidArgumentError(
                absl::StrCat("input '", a.name, "' ", v.ToString(),
                             " does not hold the batch's ", size, " values"));
          if (ints != batch.ints.end()) {
            for (int64_t i = 0; i < size; ++i) {
              if (a.bound > 0 && ints->second[i] >= a.bound)
                return absl::InvalidArgumentError(
                    absl::StrCat("input '", a.name, "': ", ints->second[i],
                                 " is not below its bound ", a.bound));
              StoreI(v, i, ints->second[i]);
            }
          } else {
            for (int64_t i = 0; i < size; ++i)
              StoreF(v, i, floats->second[i]);
          }
          return absl::OkStatus();
        }));
  }
  return absl::OkStatus();
}

} // namespace veomni::rt
