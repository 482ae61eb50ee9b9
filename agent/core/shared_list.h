// SharedList<T>: an immutable list shared by its copies.
//
// Promise: the elements never change after the list is made; copying a
// SharedList copies a pointer, not the elements, so the places that read the
// same list (a device's tags in the config, in its poller and in the uplink's
// birth of the device) hold one copy of it between them. It holds exactly as
// many elements as it was made with (no spare capacity). A default list is empty.
//
// Threads: safe to read and copy from any thread.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <utility>
#include <vector>

namespace tagrelay {

template <typename T>
class SharedList {
 public:
  SharedList() = default;
  SharedList(std::vector<T> items)  // NOLINT(google-explicit-constructor): a list is a list
      : items_(Make(std::move(items))) {}
  SharedList(std::initializer_list<T> items) : items_(Make(std::vector<T>(items))) {}

  const std::vector<T>& list() const { return items_ ? *items_ : Empty(); }
  operator const std::vector<T>&() const { return list(); }  // NOLINT: a view of the list
  size_t size() const { return list().size(); }
  bool empty() const { return list().empty(); }
  const T& operator[](size_t i) const { return list()[i]; }
  typename std::vector<T>::const_iterator begin() const { return list().begin(); }
  typename std::vector<T>::const_iterator end() const { return list().end(); }

 private:
  static std::shared_ptr<const std::vector<T>> Make(std::vector<T> items) {
    if (items.empty()) return nullptr;
    items.shrink_to_fit();  // a vector grown by push_back may hold up to twice its size
    return std::make_shared<const std::vector<T>>(std::move(items));
  }
  static const std::vector<T>& Empty() {
    static const std::vector<T> empty;
    return empty;
  }

  std::shared_ptr<const std::vector<T>> items_;
};

}  // namespace tagrelay
