//===- Media.cpp - audio files through FFmpeg's libraries -----------------===//

#include "runtime/data/Media.h"
#include "runtime/support/Status.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <cmath>

namespace veomni::rt {
namespace {

std::string AvError(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

struct FormatCloser {
  void operator()(AVFormatContext *f) const { avformat_close_input(&f); }
};
struct CodecFreer {
  void operator()(AVCodecContext *c) const { avcodec_free_context(&c); }
};
struct PacketFreer {
  void operator()(AVPacket *p) const { av_packet_free(&p); }
};
struct FrameFreer {
  void operator()(AVFrame *f) const { av_frame_free(&f); }
};
struct SwrFreer {
  void operator()(SwrContext *s) const { swr_free(&s); }
};
struct SwsFreer {
  void operator()(SwsContext *s) const { sws_freeContext(s); }
};

/// The first stream of `type` in `path`, opened with its decoder.
struct OpenedStream {
  std::unique_ptr<AVFormatContext, FormatCloser> format;
  std::unique_ptr<AVCodecContext, CodecFreer> decoder;
  AVStream *stream = nullptr;
  int index = -1;
};

absl::StatusOr<OpenedStream> OpenStream(const std::string &path,
                                        AVMediaType type) {
  // Errors are ours, named by file: FFmpeg itself stays silent.
  static std::once_flag quiet;
  std::call_once(quiet, [] { av_log_set_level(AV_LOG_QUIET); });
  const char *kind = type == AVMEDIA_TYPE_AUDIO ? "audio" : "video";
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  OpenedStream s;
  AVFormatContext *opened = nullptr;
  if (int err = avformat_open_input(&opened, path.c_str(), nullptr, nullptr);
      err < 0) {
    if (err == AVERROR(ENOENT))
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return bad(
        absl::StrCat("not a media file FFmpeg reads (", AvError(err), ")"));
  }
  s.format.reset(opened);
  if (int err = avformat_find_stream_info(s.format.get(), nullptr); err < 0)
    return bad(absl::StrCat("cannot read its streams (", AvError(err), ")"));
  const AVCodec *codec = nullptr;
  s.index = av_find_best_stream(s.format.get(), type, -1, -1, &codec, 0);
  if (s.index == AVERROR_STREAM_NOT_FOUND)
    return bad(absl::StrCat("has no ", kind, " stream"));
  if (s.index < 0 || !codec) {
    int any = av_find_best_stream(s.format.get(), type, -1, -1, nullptr, 0);
    const char *name =
        any >= 0 ? avcodec_get_name(s.format->streams[any]->codecpar->codec_id)
                 : "unknown";
    return bad(
        absl::StrCat("no decoder for its ", kind, " codec '", name, "'"));
  }
  s.stream = s.format->streams[s.index];
  s.decoder.reset(avcodec_alloc_context3(codec));
  if (!s.decoder ||
      avcodec_parameters_to_context(s.decoder.get(), s.stream->codecpar) < 0)
    return bad("cannot set up its decoder");
  if (int err = avcodec_open2(s.decoder.get(), codec, nullptr); err < 0)
    return bad(absl::StrCat("cannot open its '", codec->name, "' decoder (",
                            AvError(err), ")"));
  return s;
}

/// Decodes every frame of the stream, in order, into `each`; a frame
/// `each` refuses stops it with that error.
absl::Status DecodeFrames(OpenedStream &s, const std::string &path,
                          const std::function<absl::Status(AVFrame *)> &each) {
  const char *kind =
      s.decoder->codec_type == AVMEDIA_TYPE_AUDIO ? "audio" : "video";
  auto bad = [&](absl::string_view what, int code) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", what, " (", AvError(code), ")"));
  };
  std::unique_ptr<AVPacket, PacketFreer> packet(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFreer> frame(av_frame_alloc());
  auto drain = [&]() -> absl::Status {
    while (true) {
      int r = avcodec_receive_frame(s.decoder.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
        return absl::OkStatus();
      if (r < 0)
        return bad(absl::StrCat("damaged ", kind), r);
      absl::Status status = each(frame.get());
      av_frame_unref(frame.get());
      if (!status.ok())
        return status;
    }
  };
  while (true) {
    int r = av_read_frame(s.format.get(), packet.get());
    if (r == AVERROR_EOF)
      break;
    if (r < 0)
      return bad("cannot read it", r);
    if (packet->stream_index == s.index) {
      int sent = avcodec_send_packet(s.decoder.get(), packet.get());
      av_packet_unref(packet.get());
      if (sent < 0)
        return bad(absl::StrCat("damaged ", kind), sent);
      VEOMNI_RETURN_IF_ERROR(drain());
    } else {
      av_packet_unref(packet.get());
    }
  }
  avcodec_send_packet(s.decoder.get(), nullptr); // flush the decoder
  return drain();
}

/// `frame` as 8-bit RGB at its size (bicubic chroma, as the ffmpeg
/// tool; alpha dropped); `sws` is made on the first call and reused.
absl::StatusOr<RgbImage> ToRgb(AVFrame *frame,
                               std::unique_ptr<SwsContext, SwsFreer> &sws,
                               const std::string &path) {
  // The same context while the frames keep their size and format.
  sws.reset(sws_getCachedContext(sws.release(), frame->width, frame->height,
                                 static_cast<AVPixelFormat>(frame->format),
                                 frame->width, frame->height, AV_PIX_FMT_RGB24,
                                 SWS_BICUBIC, nullptr, nullptr, nullptr));
  if (!sws || frame->width <= 0 || frame->height <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot convert its pictures to RGB"));
  RgbImage image;
  image.height = frame->height;
  image.width = frame->width;
  // swscale's vector code writes whole blocks of pixels, past the end of a
  // row and of the last one: rows 64-byte aligned, and 64 bytes of room
  // after them, then packed.
  const int64_t row = image.width * 3;
  const int64_t stride = (row + 63) / 64 * 64;
  std::vector<uint8_t> padded(stride * image.height + 64);
  uint8_t *dst[1] = {padded.data()};
  int strides[1] = {static_cast<int>(stride)};
  if (sws_scale(sws.get(), frame->data, frame->linesize, 0, frame->height, dst,
                strides) != frame->height)
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot convert its pictures to RGB"));
  image.pixels.resize(row * image.height);
  for (int64_t y = 0; y < image.height; ++y)
    std::memcpy(image.pixels.data() + y * row, padded.data() + y * stride, row);
  return image;
}

} // namespace

absl::StatusOr<RgbImage> DecodeFirstFrame(const std::string &path) {
  VEOMNI_ASSIGN_OR_RETURN(OpenedStream opened,
                          OpenStream(path, AVMEDIA_TYPE_VIDEO));
  std::unique_ptr<SwsContext, SwsFreer> sws;
  std::optional<RgbImage> first;
  absl::Status status =
      DecodeFrames(opened, path, [&](AVFrame *frame) -> absl::Status {
        if (first)
          return absl::OkStatus();
        VEOMNI_ASSIGN_OR_RETURN(RgbImage image, ToRgb(frame, sws, path));
        first = std::move(image);
        return absl::OkStatus();
      });
  if (!status.ok() && !first)
    return status;
  if (!first)
    return absl::InvalidArgumentError(absl::StrCat(path, ": has no picture"));
  return *std::move(first);
}

bool HasAudioStream(const std::string &path) {
  return OpenStream(path, AVMEDIA_TYPE_AUDIO).ok();
}

absl::StatusOr<std::vector<float>> DecodeAudio(const std::string &path,
                                               int rate) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  if (rate <= 0)
    return bad(absl::StrCat("cannot resample to ", rate, " Hz"));

  VEOMNI_ASSIGN_OR_RETURN(OpenedStream opened,
                          OpenStream(path, AVMEDIA_TYPE_AUDIO));
  AVCodecContext *decoder = opened.decoder.get();
  AVStream *stream = opened.stream;
  const int channels = decoder->ch_layout.nb_channels;
  if (channels <= 0 || decoder->sample_rate <= 0)
    return bad("its audio stream has no channels or sample rate");
  // A damaged header can claim billions of samples a second, whose
  // resampling filter would take minutes and gigabytes to build (found by
  // test/fuzz/media_fuzzer.cpp). Recorded audio stays far below these.
  constexpr int kMaxRate = 768000, kMaxChannels = 64;
  if (decoder->sample_rate > kMaxRate)
    return bad(absl::StrCat("its audio stream claims ", decoder->sample_rate,
                            " samples a second, more than the ", kMaxRate,
                            " veomni reads (a damaged header?)"));
  if (channels > kMaxChannels)
    return bad(absl::StrCat("its audio stream claims ", channels,
                            " channels, more than the ", kMaxChannels,
                            " veomni reads (a damaged header?)"));

  // Channels averaged (a mix matrix of 1/C each) and resampled in one pass.
  AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
  AVChannelLayout in;
  if (decoder->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
    av_channel_layout_default(&in, channels);
  else if (av_channel_layout_copy(&in, &decoder->ch_layout) < 0)
    return bad("cannot read its channel layout");
  SwrContext *made = nullptr;
  int err = swr_alloc_set_opts2(&made, &mono, AV_SAMPLE_FMT_FLT, rate, &in,
                                decoder->sample_fmt, decoder->sample_rate, 0,
                                nullptr);
  av_channel_layout_uninit(&in);
  std::unique_ptr<SwrContext, SwrFreer> swr(made);
  if (err < 0)
    return bad(absl::StrCat("cannot resample it (", AvError(err), ")"));
  std::vector<double> mix(channels, 1.0 / channels);
  if (swr_set_matrix(swr.get(), mix.data(), channels) < 0 ||
      swr_init(swr.get()) < 0)
    return bad("cannot mix its channels to mono");

  std::vector<float> out;
  auto convert = [&](const uint8_t **data, int samples) -> absl::Status {
    int room = swr_get_out_samples(swr.get(), samples);
    if (room < 0)
      return bad("cannot resample it");
    size_t at = out.size();
    out.resize(at + room);
    uint8_t *dst = reinterpret_cast<uint8_t *>(out.data() + at);
    int got = swr_convert(swr.get(), &dst, room, data, samples);
    if (got < 0)
      return bad(absl::StrCat("cannot resample it (", AvError(got), ")"));
    out.resize(at + got);
    return absl::OkStatus();
  };
  int64_t decoded = 0; // samples at the file's own rate
  VEOMNI_RETURN_IF_ERROR(
      DecodeFrames(opened, path, [&](AVFrame *frame) -> absl::Status {
        decoded += frame->nb_samples;
        return convert(const_cast<const uint8_t **>(frame->extended_data),
                       frame->nb_samples);
      }));
  // The resampler's tail.
  while (true) {
    size_t before = out.size();
    if (absl::Status s = convert(nullptr, 0); !s.ok())
      return s;
    if (out.size() == before)
      break;
  }
  if (decoded == 0 || out.empty())
    return bad("has no audio samples");
  // A file cut short decodes without complaint: compare with the duration
  // its header states (when it states one).
  if (stream->duration != AV_NOPTS_VALUE && stream->duration > 0) {
    double stated = stream->duration * av_q2d(stream->time_base);
    double got = double(decoded) / decoder->sample_rate;
    // (MP3's stated duration counts the encoder's delay and padding.)
    if (got < 0.9 * stated - 0.1)
      return bad(absl::StrCat("ends early: ", got,
                              " s of audio where its "
                              "header states ",
                              stated,
                              " s (a truncated "
                              "file?)"));
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>>
SampleFrames(int64_t total, double fps, const VideoSampling &sampling) {
  const int64_t factor = std::max<int64_t>(sampling.frameFactor, 1);
  if (total <= 0 || !(fps > 0))
    return absl::InvalidArgumentError("a video without frames or a frame rate");
  std::vector<int64_t> indices;
  if (sampling.spread) {
    // As Qwen3VLVideoProcessor.sample_frames does: int(total / fps x
    // target) within [minFrames, maxFrames] and at most every frame, then
    // np.linspace(0, total - 1, n) rounded half to even.
    int64_t n = static_cast<int64_t>(double(total) / fps * sampling.fps);
    n = std::min({std::max(n, sampling.minFrames), sampling.maxFrames, total});
    if (n < 1)
      return absl::InvalidArgumentError("no frames to sample");
    const double step = n > 1 ? double(total - 1) / double(n - 1) : 0;
    for (int64_t i = 0; i < n; ++i)
      indices.push_back(
          i + 1 == n && n > 1
              ? total - 1
              : static_cast<int64_t>(std::nearbyint(double(i) * step)));
    return indices;
  }
  // As Qwen2VLVideoProcessor.sample_frames does.
  const double most =
      std::floor(double(std::min(sampling.maxFrames, total)) / double(factor)) *
      double(factor);
  double n = double(total) / fps * sampling.fps;
  n = std::min({std::max(n, double(sampling.minFrames)), most, double(total)});
  const int64_t count =
      static_cast<int64_t>(std::floor(n / double(factor))) * factor;
  if (count <= 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "a video of ", total, " frames is shorter than a temporal patch"));
  const double step = double(total) / double(count);
  for (int64_t i = 0; i < count; ++i)
    indices.push_back(static_cast<int64_t>(double(i) * step));
  return indices;
}

absl::StatusOr<DecodedVideo> DecodeVideo(const std::string &path,
                                         const VideoSampling &sampling) {
  VEOMNI_ASSIGN_OR_RETURN(OpenedStream opened,
                          OpenStream(path, AVMEDIA_TYPE_VIDEO));
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  AVCodecContext *decoder = opened.decoder.get();
  AVStream *stream = opened.stream;
  DecodedVideo out;
  AVRational rate = stream->avg_frame_rate.num > 0 ? stream->avg_frame_rate
                                                   : stream->r_frame_rate;
  out.fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
  out.totalFrames = stream->nb_frames;
  if (out.totalFrames <= 0 && out.fps > 0) { // from the duration
    double seconds = stream->duration != AV_NOPTS_VALUE
                         ? stream->duration * av_q2d(stream->time_base)
                         : double(opened.format->duration) / AV_TIME_BASE;
    out.totalFrames = static_cast<int64_t>(std::llround(seconds * out.fps));
  }
  absl::StatusOr<std::vector<int64_t>> indices =
      SampleFrames(out.totalFrames, out.fps, sampling);
  if (!indices.ok())
    return bad(indices.status().message());
  out.indices = *std::move(indices);
  if (decoder->width <= 0 || decoder->height <= 0)
    return bad("its video stream has no size");
  std::unique_ptr<SwsContext, SwsFreer> sws;
  int64_t number = 0;
  size_t next = 0;
  VEOMNI_RETURN_IF_ERROR(
      DecodeFrames(opened, path, [&](AVFrame *frame) -> absl::Status {
        const int64_t k = number++;
        if (next >= out.indices.size() || out.indices[next] != k)
          return absl::OkStatus();
        if (frame->width != decoder->width || frame->height != decoder->height)
          return bad("its frames change size");
        VEOMNI_ASSIGN_OR_RETURN(RgbImage image, ToRgb(frame, sws, path));
        // A frame number sampled twice is the same picture twice.
        while (next < out.indices.size() && out.indices[next] == k) {
          out.frames.push_back(image);
          ++next;
        }
        return absl::OkStatus();
      }));
  if (out.frames.empty())
    return bad("has no video frames");
  // A stream shorter than its header said: the last frame stands for the
  // rest, as a sample taken past the end.
  while (out.frames.size() < out.indices.size())
    out.frames.push_back(out.frames.back());
  return out;
}

} // namespace veomni::rt
