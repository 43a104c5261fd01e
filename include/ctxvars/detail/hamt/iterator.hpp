// Depth-first iteration over a trie's entries without allocation: the path is
// kept in a fixed array sized by the trie's maximum depth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>

#include "bits.hpp"

namespace ctxvars::detail::hamt {

template <class Node, unsigned B>
class iterator {
 public:
  using entry_type = std::remove_pointer_t<decltype(std::declval<Node&>().data())>;
  using value_type = entry_type;
  using reference = const entry_type&;
  using pointer = const entry_type*;
  using difference_type = std::ptrdiff_t;
  using iterator_category = std::forward_iterator_tag;

  iterator() noexcept = default;
  explicit iterator(const Node* root) noexcept {
    if (root) {
      stack_[0] = {root, 0};
      top_ = 0;
      advance();
    }
  }

  reference operator*() const noexcept { return *cur_; }
  pointer operator->() const noexcept { return cur_; }
  iterator& operator++() noexcept {
    advance();
    return *this;
  }
  iterator operator++(int) noexcept {
    iterator t = *this;
    advance();
    return t;
  }
  friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.cur_ == b.cur_; }

 private:
  struct frame {
    const Node* n;
    std::uint32_t pos;  // < ndata: next entry; then children
  };
  void advance() noexcept {
    while (top_ >= 0) {
      frame& f = stack_[top_];
      if (f.pos < f.n->ndata) {
        cur_ = &f.n->data()[f.pos++];
        return;
      }
      const std::uint32_t ci = f.pos - f.n->ndata;
      if (ci < f.n->nchild) {
        ++f.pos;
        ++top_;
        stack_[top_] = {f.n->children()[ci], 0};
        continue;
      }
      --top_;
    }
    cur_ = nullptr;
  }

  frame stack_[bits<B>::max_depth + 2]{};
  int top_ = -1;
  const entry_type* cur_ = nullptr;
};

}  // namespace ctxvars::detail::hamt
