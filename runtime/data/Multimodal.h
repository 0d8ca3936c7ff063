//===- Multimodal.h - conversations with images and audio -------*- C++ -*-===//
//
// The vision-language and omni families' batches from JSONL conversations
// whose content parts name image and audio files (docs/data.md):
//
//   {"messages": [{"role": "user", "content": [
//       {"type": "image", "image": "cat.png"},
//       {"type": "audio", "audio": "meow.wav"},
//       {"type": "text", "text": "What is this?"}]},
//     {"role": "assistant", "content": "A cat."}]}
//
// An image becomes Qwen2-VL's patches (Image.h) and, in the text,
// <vision_start> <image> x tokens <vision_end>; a clip is decoded and
// resampled (Media.h), turned into Whisper log-mel frames (Audio.h) and
// becomes <audio_start> <audio> x tokens <audio_end>: the placeholder ids
// are the model config's own. A MediaBatcher packs whole samples into one
// global batch of the compiled shapes (rows x seq_len tokens, a patch
// budget, a frame budget) and makes every input the program takes
// (docs/frontends.md, "Batch inputs"): multimodal rope positions as
// transformers' get_rope_index computes them, the vision tower's patch
// positions, segments and (Qwen2.5) window order, the audio chunks, and
// where the towers' features go. What a batch leaves unused is padding
// that changes no loss: its tokens are a segment of their own with labels
// -100, its patches and frames segments of their own whose features land
// on one padding token.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_MULTIMODAL_H
#define VEOMNI_RUNTIME_DATA_MULTIMODAL_H

#include "runtime/data/Audio.h"
#include "runtime/data/Chat.h"
#include "runtime/data/Image.h"
#include "runtime/data/Jsonl.h"
#include "runtime/data/Media.h"
#include "runtime/data/Stream.h"
#include "runtime/data/Tokenizer.h"

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace veomni::rt {

/// What a model's config.json says its media inputs are.
struct MediaModel {
  /// qwen2_vl, qwen2_5_vl, qwen3_vl, qwen3_vl_moe or qwen2_5_omni
  std::string modelType;
  bool vision = false, audio = false;
  bool windowed = false; ///< Qwen2.5's vision tower: window order
  /// Qwen3-VL: the side of the tower's learned position grid
  /// (sqrt num_position_embeddings), which each image's patches sample
  /// bilinearly (vision_pos_embed_ids / _weights); 0: none.
  int64_t positionGrid = 0;
  VisionConfig image; ///< patch, merge and temporal patch sizes
  int64_t channels = 3;
  int64_t windowSize = 112; ///< Qwen2.5: a window's side in pixels
  int32_t imageToken = -1, visionStart = -1, visionEnd = -1;
  /// Videos: their placeholder (-1: the model takes none), how frames are
  /// sampled, the pixel bounds of a frame, and the budget of all a video's
  /// frames together (a frame gets at most its share, as transformers'
  /// cap_pixels_per_frame and qwen-vl-utils do).
  int32_t videoToken = -1;
  VideoSampling sampling;
  VisionConfig video;
  int64_t videoTotalPixels = 90316800;
  /// How a video's temporal rope positions step: Qwen2.5-VL's
  /// tokens_per_second, the omni models' position_id_per_seconds (times
  /// the seconds a temporal patch spans); Qwen2-VL steps by one a patch.
  double videoPositionsPerSecond = 0;
  /// Qwen3-VL: frames sampled across the whole video (sampling.spread)
  /// and sized together (video.minPixels: all the frames' least pixels;
  /// video.maxPixels: a frame's most; videoTotalPixels: all the frames'
  /// most), each temporal patch a block of its own after its timestamp
  /// text "<T seconds>", its positions an image's.
  bool timestamps = false;
  int32_t audioToken = -1, audioStart = -1, audioEnd = -1;
  WhisperFeatures features; ///< mels: the audio tower's num_mel_bins
  int64_t audioChunk = 200; ///< frames per attention chunk: 2 n_window
  /// Qwen3-Omni's audio encoder: chunks of audioChunk frames, 13 features
  /// a whole chunk (three stride-2 convolutions), attention in windows of
  /// audioWindow features (n_window_infer frames'); its inputs are
  /// audio_frame_mask and audio_segment_ids.
  bool qwen3Audio = false;
  int64_t audioWindow = 0;
  /// The omni models' use_audio_in_video: a video with a sound track is
  /// <vision_start> <audio_start> its frames' and its clip's tokens
  /// interleaved by time <audio_end> <vision_end> (Qwen3-Omni: a video
  /// token before audio token j when its temporal position is at most j;
  /// Qwen2.5-Omni: by chunks of secondsPerChunk); the clip is the
  /// sample's next audio (VisionPatches::withAudio).
  bool audioInVideo = false;
  /// Qwen2.5-Omni's seconds_per_chunk: its audio-in-video order goes by
  /// chunks of this many seconds.
  double secondsPerChunk = 2;
  /// Gemma 3: whole images resized to imageSize x imageSize, each
  /// "\n\n" <start_of_image> (visionStart) imageToken x tokensPerImage
  /// <end_of_image> (visionEnd) "\n\n" in the text, their tokens marked in
  /// token_type_ids (bidirectional blocks), positions counting up
  /// ([B, S]); pixel_values [images, 3, size, size], the budget in images.
  bool wholeImages = false;
  int64_t imageSize = 0, tokensPerImage = 0;
  /// Gemma 3's do_pan_and_scan: an elongated image is followed by its
  /// crops (PanAndScanCrops), each an image of its own, in its
  /// processor's words: "Here is the original image " IMAGE " and here
  /// are some crops to help you see better " CROP " " CROP ...
  bool panAndScan = false;
  /// The tokens (encoder features) of a clip of `frames` log-mel frames.
  int64_t AudioTokens(int64_t frames) const;
};

/// Reads `config` (a config.json); an error names the file and the field.
/// A model without vision or audio inputs has neither flag set. Qwen3-VL
/// normalises pixels by mean 0.5, std 0.5 and patches by 16 by default,
/// as its published preprocessor config does.
absl::StatusOr<MediaModel> ReadMediaModel(const std::string &config);

/// One conversation (or text) with its media, tokenized.
using MediaSample = TokenizedSample;

/// The sample of one JSONL line; media paths are relative to `dir`. A
/// missing or damaged file, a part of another type, or media the model
/// has no tower for is an error naming the part.
absl::Status EncodeMediaSample(absl::string_view line, const std::string &dir,
                               const Tokenizer &tokenizer, ChatFormat chat,
                               int32_t eos, const MediaModel &model,
                               MediaSample &out);

/// The compiled shapes one global batch fills.
struct MediaBudget {
  int64_t rows = 1, seqLen = 1; ///< input_ids [rows, seqLen]
  int64_t patches = 0; ///< pixel_values' rows (0: no vision); Gemma 3's images
  int64_t frames = 0;  ///< input_features' frames (0: no audio)
};

/// One global batch: every input by name, as the program lays it out
/// (row-major, the global shape).
struct MediaBatch {
  std::map<std::string, std::vector<int32_t>> ints;
  std::map<std::string, std::vector<float>> floats;
  int64_t samples = 0;
};

class MediaBatcher {
public:
  MediaBatcher(const MediaModel &model, const MediaBudget &budget)
      : model_(model), budget_(budget) {}

  /// "" when `s` fits an empty batch, else what it exceeds.
  std::string Oversize(const MediaSample &s) const;
  /// Adds `s` when it fits what the batch has left (whole: a sample is
  /// never split); false when it does not, and the batch is then full.
  bool Add(const MediaSample &s);
  /// The batch of the samples added, padded, and a new empty one begun.
  MediaBatch Finish();

private:
  /// Frames a clip of `frames` takes in the batch: whole chunks of the
  /// audio tower's convolution.
  int64_t AlignedFrames(int64_t frames) const;
  const MediaModel model_;
  const MediaBudget budget_;
  std::vector<MediaSample> samples_;
  std::vector<std::pair<int64_t, int64_t>> where_; ///< (row, at) a sample
  int64_t row_ = 0, used_ = 0; ///< the row being filled and its tokens
  int64_t patches_ = 0, frames_ = 0;
};

/// Global batches of a stream's samples, packed whole by a MediaBatcher.
/// A sample over the budgets of an empty batch is left out and counted
/// (`oversized`), or, when it holds text alone and `truncate` is set, cut
/// to a row (`truncated`).
class MediaPacker {
public:
  MediaPacker(DataStream &stream, const MediaModel &model,
              const MediaBudget &budget, bool truncate)
      : stream_(stream), model_(model), budget_(budget),
        batcher_(model, budget), truncate_(truncate),
        start_(stream.Position()) {}
  /// The next global batch.
  absl::StatusOr<MediaBatch> Next();
  /// Where the next batch starts (the stream's position before the sample
  /// the last batch had no room for), to save in checkpoints.
  std::string Position() const;
  absl::Status Restore(const std::string &position);

  const SkippedSamples &oversized() const { return oversized_; }
  int64_t truncated() const { return truncated_; }

private:
  DataStream &stream_;
  const MediaModel model_;
  const MediaBudget budget_;
  MediaBatcher batcher_;
  const bool truncate_;
  TokenizedSample pending_; ///< read, not yet in a batch
  bool hasPending_ = false;
  std::string start_; ///< the stream's position before pending_
  SkippedSamples oversized_;
  int64_t truncated_ = 0;
  /// Each source's epoch when the current run of oversized samples began
  /// (empty: none): a run through a whole pass of every source is an
  /// error, not an endless loop.
  std::vector<uint64_t> streak_;
};

class Executor;

/// Fills every batch input of `executor` (global shapes) from `batch`; an
/// input the batch lacks, or one of another size, is an error naming it.
absl::Status FillMediaBatch(Executor &executor, const MediaBatch &batch);

/// The budgets `executor`'s program was compiled for: input_ids' rows and
/// columns, pixel_values' rows, input_features' frames; an error when the
/// program's media inputs do not fit `model` (patch size, mel bins).
absl::StatusOr<MediaBudget> MediaBudgetOf(const Executor &executor,
                                          const MediaModel &model);

/// The multimodal rope positions ([3][ids.size()]: temporal, height,
/// width) of one sample, from 0, as transformers 5's get_rope_index
/// computes them: text counts up on all three; the tokens of an image or
/// a video take the position p after the text before them plus (time,
/// row, column) of their merged patch, time 0 for an image and a video's
/// temporal patch index scaled by its seconds (above); a clip's tokens
/// count up from p. The text after goes on from one past the largest
/// position so far (Qwen2.5-Omni), or for the VL models from p plus the
/// larger side of the merged grid.
std::vector<std::vector<int32_t>> MultimodalPositions(const MediaSample &s,
                                                      const MediaModel &model);

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_MULTIMODAL_H
