//===- Prefetch.h - batches made ahead of the step --------------*- C++ -*-===//
//
// A loader thread that makes a run's global batches ahead of the training
// step: a queue of `depth` batches, each with the data position after it.
// Next hands them out in order; an error of the maker (a bad sample) comes
// out of the Next that reaches it, and of every Next after, so it names
// the step it stops. Position is the consumer's: a checkpoint saves it, and
// the batches queued ahead are made again after a resume. The maker's
// state must not be touched elsewhere while a Prefetcher runs it.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_DATA_PREFETCH_H
#define VEOMNI_RUNTIME_DATA_PREFETCH_H

#include "absl/status/statusor.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace veomni::rt {

template <typename Batch> class Prefetcher {
public:
  /// `make` makes the next batch, `position` says where the data stands
  /// after it; `start` is the position before the first.
  Prefetcher(std::function<absl::StatusOr<Batch>()> make,
             std::function<std::string()> position, std::string start,
             int depth = 4)
      : make_(std::move(make)), position_(std::move(position)),
        depth_(std::max(depth, 1)), consumed_(std::move(start)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }
  Prefetcher(const Prefetcher &) = delete;
  Prefetcher &operator=(const Prefetcher &) = delete;

  /// The next batch; `waited` gets the seconds it blocked for.
  absl::StatusOr<Batch> Next(double *waited = nullptr) {
    auto t0 = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [&] { return !queue_.empty(); });
    if (waited)
      *waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
              .count();
    Item &front = queue_.front();
    if (!front.batch.ok()) // stays at the front: every later Next fails too
      return front.batch.status();
    absl::StatusOr<Batch> batch = std::move(front.batch);
    consumed_ = std::move(front.after);
    queue_.pop_front();
    changed_.notify_all();
    return batch;
  }

  /// The data's position after the last batch Next returned.
  std::string Position() const {
    std::lock_guard<std::mutex> lock(mu_);
    return consumed_;
  }

private:
  struct Item {
    absl::StatusOr<Batch> batch;
    std::string after;
  };

  void Run() {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        changed_.wait(lock, [&] {
          return stop_ || static_cast<int>(queue_.size()) < depth_;
        });
        if (stop_)
          return;
      }
      absl::StatusOr<Batch> batch = make_();
      Item item{std::move(batch), position_()};
      const bool failed = !item.batch.ok();
      {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(item));
      }
      changed_.notify_all();
      if (failed)
        return;
    }
  }

  std::function<absl::StatusOr<Batch>()> make_;
  std::function<std::string()> position_;
  const int depth_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Item> queue_;
  std::string consumed_;
  bool stop_ = false;
  std::thread thread_; ///< last: started once the rest is ready
};

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_DATA_PREFETCH_H
