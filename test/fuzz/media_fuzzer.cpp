//===- media_fuzzer.cpp - images, audio and video of JSONL samples --------===//
//
// A sample's media file: PNG and JPEG are decoded by veomni (libpng,
// libjpeg-turbo), the rest through FFmpeg. The input's first byte picks
// the reader (image, audio, video), the rest is the file. A decoded image
// is resized and cut into Qwen2-VL patches as the data pipeline does.
//
//===----------------------------------------------------------------------===//

#include "runtime/data/Image.h"
#include "runtime/data/Media.h"
#include "test/fuzz/FuzzUtil.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace veomni::rt;
  if (size < 1)
    return 0;
  static const std::string path = veomni::fuzz::ScratchPath("media");
  veomni::fuzz::WriteFile(path, data + 1, size - 1);
  switch (data[0] % 3) {
  case 0: {
    absl::StatusOr<RgbImage> image = DecodeImage(path);
    if (!image.ok())
      return 0;
    if (image->height * image->width <= (1 << 22))
      (void)Qwen2VLPatches(image->pixels, image->height, image->width);
    return 0;
  }
  case 1:
    (void)DecodeAudio(path);
    return 0;
  default: {
    VideoSampling sampling;
    sampling.maxFrames = 8;
    (void)DecodeVideo(path, sampling);
    return 0;
  }
  }
}
