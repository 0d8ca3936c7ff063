//===- ThreadPool.h - a fixed set of worker threads -------------*- C++ -*-===//
//
// Workers that run submitted tasks in submission order (as they come free).
// The destructor lets the running tasks finish and drops the queued ones:
// a task must own what it needs (capture by value) and report through its
// own promise.
//
//===----------------------------------------------------------------------===//

#ifndef VEOMNI_RUNTIME_SUPPORT_THREADPOOL_H
#define VEOMNI_RUNTIME_SUPPORT_THREADPOOL_H

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace veomni::rt {

class ThreadPool {
public:
  explicit ThreadPool(int threads) {
    for (int i = 0; i < std::max(threads, 1); ++i)
      workers_.emplace_back([this] { Work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      tasks_.clear();
    }
    ready_.notify_all();
    for (std::thread &t : workers_)
      t.join();
  }
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  void Submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

private:
  void Work() {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        ready_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
        if (stop_)
          return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

} // namespace veomni::rt

#endif // VEOMNI_RUNTIME_SUPPORT_THREADPOOL_H
