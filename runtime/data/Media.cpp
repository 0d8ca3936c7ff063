//===- Media.cpp - audio files through FFmpeg's libraries -----------------===//

#include "runtime/data/Media.h"

#include "absl/strings/str_cat.h"

#include <mutex>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
}

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

} // namespace

absl::StatusOr<std::vector<float>> DecodeAudio(const std::string &path,
                                               int rate) {
  // Errors are ours, named by file: FFmpeg itself stays silent.
  static std::once_flag quiet;
  std::call_once(quiet, [] { av_log_set_level(AV_LOG_QUIET); });
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  if (rate <= 0)
    return bad(absl::StrCat("cannot resample to ", rate, " Hz"));

  AVFormatContext *opened = nullptr;
  if (int err = avformat_open_input(&opened, path.c_str(), nullptr, nullptr);
      err < 0) {
    if (err == AVERROR(ENOENT))
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return bad(
        absl::StrCat("not a media file FFmpeg reads (", AvError(err), ")"));
  }
  std::unique_ptr<AVFormatContext, FormatCloser> format(opened);
  if (int err = avformat_find_stream_info(format.get(), nullptr); err < 0)
    return bad(absl::StrCat("cannot read its streams (", AvError(err), ")"));
  const AVCodec *codec = nullptr;
  int index =
      av_find_best_stream(format.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
  if (index == AVERROR_STREAM_NOT_FOUND)
    return bad("has no audio stream");
  if (index < 0 || !codec) {
    int any = av_find_best_stream(format.get(), AVMEDIA_TYPE_AUDIO, -1, -1,
                                  nullptr, 0);
    const char *name =
        any >= 0 ? avcodec_get_name(format->streams[any]->codecpar->codec_id)
                 : "unknown";
    return bad(absl::StrCat("no decoder for its audio codec '", name, "'"));
  }
  AVStream *stream = format->streams[index];
  std::unique_ptr<AVCodecContext, CodecFreer> decoder(
      avcodec_alloc_context3(codec));
  if (!decoder ||
      avcodec_parameters_to_context(decoder.get(), stream->codecpar) < 0)
    return bad("cannot set up its decoder");
  if (int err = avcodec_open2(decoder.get(), codec, nullptr); err < 0)
    return bad(absl::StrCat("cannot open its '", codec->name, "' decoder (",
                            AvError(err), ")"));
  const int channels = decoder->ch_layout.nb_channels;
  if (channels <= 0 || decoder->sample_rate <= 0)
    return bad("its audio stream has no channels or sample rate");

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
  std::unique_ptr<AVPacket, PacketFreer> packet(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFreer> frame(av_frame_alloc());
  int64_t decoded = 0; // samples at the file's own rate
  auto drain = [&]() -> absl::Status {
    while (true) {
      int r = avcodec_receive_frame(decoder.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
        return absl::OkStatus();
      if (r < 0)
        return bad(absl::StrCat("damaged audio (", AvError(r), ")"));
      decoded += frame->nb_samples;
      absl::Status s =
          convert(const_cast<const uint8_t **>(frame->extended_data),
                  frame->nb_samples);
      av_frame_unref(frame.get());
      if (!s.ok())
        return s;
    }
  };
  while (true) {
    int r = av_read_frame(format.get(), packet.get());
    if (r == AVERROR_EOF)
      break;
    if (r < 0)
      return bad(absl::StrCat("cannot read it (", AvError(r), ")"));
    if (packet->stream_index == index) {
      int sent = avcodec_send_packet(decoder.get(), packet.get());
      av_packet_unref(packet.get());
      if (sent < 0)
        return bad(absl::StrCat("damaged audio (", AvError(sent), ")"));
      if (absl::Status s = drain(); !s.ok())
        return s;
    } else {
      av_packet_unref(packet.get());
    }
  }
  avcodec_send_packet(decoder.get(), nullptr); // flush the decoder
  if (absl::Status s = drain(); !s.ok())
    return s;
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

} // namespace veomni::rt
