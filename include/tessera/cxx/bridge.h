#pragma once
#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#if __cplusplus >= 201703L
#include <string_view>
#endif
#if __cplusplus >= 202002L
#include <ranges>
#endif

#ifdef __clang__
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wdollar-in-identifier-extension"
#endif // __clang__

namespace rust {
inline namespace cxxbridge1 {
// #include "rust/cxx.h"

#ifndef CXXBRIDGE1_PANIC
#define CXXBRIDGE1_PANIC
template <typename Exception>
void panic [[noreturn]] (const char *msg);
#endif // CXXBRIDGE1_PANIC

struct unsafe_bitcopy_t;

namespace {
template <typename T>
class impl;
} // namespace

template <typename T>
::std::size_t size_of();
template <typename T>
::std::size_t align_of();

#ifndef CXXBRIDGE1_RUST_STRING
#define CXXBRIDGE1_RUST_STRING
class String final {
public:
  String() noexcept;
  String(const String &) noexcept;
  String(String &&) noexcept;
  ~String() noexcept;

  String(const std::string &);
  String(const char *);
  String(const char *, std::size_t);
  String(const char16_t *);
  String(const char16_t *, std::size_t);
#ifdef __cpp_char8_t
  String(const char8_t *s);
  String(const char8_t *s, std::size_t len);
#endif

  static String lossy(const std::string &) noexcept;
  static String lossy(const char *) noexcept;
  static String lossy(const char *, std::size_t) noexcept;
  static String lossy(const char16_t *) noexcept;
  static String lossy(const char16_t *, std::size_t) noexcept;

  String &operator=(const String &) & noexcept;
  String &operator=(String &&) & noexcept;

  explicit operator std::string() const;

  const char *data() const noexcept;
  char *data() noexcept;

  std::size_t size() const noexcept;
  std::size_t length() const noexcept;
  bool empty() const noexcept;

  const char *c_str() noexcept;

  std::size_t capacity() const noexcept;
  void reserve(size_t new_cap) noexcept;

  using iterator = char *;
  iterator begin() noexcept;
  iterator end() noexcept;

  using const_iterator = const char *;
  const_iterator begin() const noexcept;
  const_iterator end() const noexcept;
  const_iterator cbegin() const noexcept;
  const_iterator cend() const noexcept;

  bool operator==(const String &) const noexcept;
  bool operator!=(const String &) const noexcept;
  bool operator<(const String &) const noexcept;
  bool operator<=(const String &) const noexcept;
  bool operator>(const String &) const noexcept;
  bool operator>=(const String &) const noexcept;

  void swap(String &) noexcept;

  String(unsafe_bitcopy_t, const String &) noexcept;

private:
  struct lossy_t;
  String(lossy_t, const char *, std::size_t) noexcept;
  String(lossy_t, const char16_t *, std::size_t) noexcept;
  friend void swap(String &lhs, String &rhs) noexcept { lhs.swap(rhs); }

  std::array<std::uintptr_t, 3> repr;
};
#endif // CXXBRIDGE1_RUST_STRING

#ifndef CXXBRIDGE1_RUST_STR
#define CXXBRIDGE1_RUST_STR
class Str final {
public:
  Str() noexcept;
  Str(const String &) noexcept;
  Str(const std::string &);
  Str(const char *);
  Str(const char *, std::size_t);

  Str &operator=(const Str &) & noexcept = default;

  explicit operator std::string() const;
#if __cplusplus >= 201703L
  explicit operator std::string_view() const;
#endif

  const char *data() const noexcept;
  std::size_t size() const noexcept;
  std::size_t length() const noexcept;
  bool empty() const noexcept;

  Str(const Str &) noexcept = default;
  ~Str() noexcept = default;

  using iterator = const char *;
  using const_iterator = const char *;
  const_iterator begin() const noexcept;
  const_iterator end() const noexcept;
  const_iterator cbegin() const noexcept;
  const_iterator cend() const noexcept;

  bool operator==(const Str &) const noexcept;
  bool operator!=(const Str &) const noexcept;
  bool operator<(const Str &) const noexcept;
  bool operator<=(const Str &) const noexcept;
  bool operator>(const Str &) const noexcept;
  bool operator>=(const Str &) const noexcept;

  void swap(Str &) noexcept;

private:
  class uninit;
  Str(uninit) noexcept;
  friend impl<Str>;

  std::array<std::uintptr_t, 2> repr;
};
#endif // CXXBRIDGE1_RUST_STR

#ifndef CXXBRIDGE1_RUST_SLICE
#define CXXBRIDGE1_RUST_SLICE
namespace detail {
template <bool>
struct copy_assignable_if {};

template <>
struct copy_assignable_if<false> {
  copy_assignable_if() noexcept = default;
  copy_assignable_if(const copy_assignable_if &) noexcept = default;
  copy_assignable_if &operator=(const copy_assignable_if &) & noexcept = delete;
  copy_assignable_if &operator=(copy_assignable_if &&) & noexcept = default;
};
} // namespace detail

template <typename T>
class Slice final
    : private detail::copy_assignable_if<std::is_const<T>::value> {
public:
  using value_type = T;

  Slice() noexcept;
  Slice(T *, std::size_t count) noexcept;

  template <typename C>
  explicit Slice(C &c) : Slice(c.data(), c.size()) {}

  Slice &operator=(const Slice<T> &) & noexcept = default;
  Slice &operator=(Slice<T> &&) & noexcept = default;

  T *data() const noexcept;
  std::size_t size() const noexcept;
  std::size_t length() const noexcept;
  bool empty() const noexcept;

  T &operator[](std::size_t n) const noexcept;
  T &at(std::size_t n) const;
  T &front() const noexcept;
  T &back() const noexcept;

  Slice(const Slice<T> &) noexcept = default;
  ~Slice() noexcept = default;

  class iterator;
  iterator begin() const noexcept;
  iterator end() const noexcept;

  void swap(Slice &) noexcept;

private:
  class uninit;
  Slice(uninit) noexcept;
  friend impl<Slice>;
  friend void sliceInit(void *, const void *, std::size_t) noexcept;
  friend void *slicePtr(const void *) noexcept;
  friend std::size_t sliceLen(const void *) noexcept;

  std::array<std::uintptr_t, 2> repr;
};

#ifdef __cpp_deduction_guides
template <typename C>
explicit Slice(C &c)
    -> Slice<std::remove_reference_t<decltype(*std::declval<C>().data())>>;
#endif // __cpp_deduction_guides

template <typename T>
class Slice<T>::iterator final {
public:
#if __cplusplus >= 202002L
  using iterator_category = std::contiguous_iterator_tag;
#else
  using iterator_category = std::random_access_iterator_tag;
#endif
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  using pointer = typename std::add_pointer<T>::type;
  using reference = typename std::add_lvalue_reference<T>::type;

  reference operator*() const noexcept;
  pointer operator->() const noexcept;
  reference operator[](difference_type) const noexcept;

  iterator &operator++() noexcept;
  iterator operator++(int) noexcept;
  iterator &operator--() noexcept;
  iterator operator--(int) noexcept;

  iterator &operator+=(difference_type) noexcept;
  iterator &operator-=(difference_type) noexcept;
  iterator operator+(difference_type) const noexcept;
  friend inline iterator operator+(difference_type lhs, iterator rhs) noexcept {
    return rhs + lhs;
  }
  iterator operator-(difference_type) const noexcept;
  difference_type operator-(const iterator &) const noexcept;

  bool operator==(const iterator &) const noexcept;
  bool operator!=(const iterator &) const noexcept;
  bool operator<(const iterator &) const noexcept;
  bool operator<=(const iterator &) const noexcept;
  bool operator>(const iterator &) const noexcept;
  bool operator>=(const iterator &) const noexcept;

private:
  friend class Slice;
  void *pos;
  std::size_t stride;
};

template <typename T>
Slice<T>::Slice() noexcept {
  sliceInit(this, reinterpret_cast<void *>(align_of<T>()), 0);
}

template <typename T>
Slice<T>::Slice(T *s, std::size_t count) noexcept {
  assert(s != nullptr || count == 0);
  sliceInit(this,
            s == nullptr && count == 0
                ? reinterpret_cast<void *>(align_of<T>())
                : const_cast<typename std::remove_const<T>::type *>(s),
            count);
}

template <typename T>
T *Slice<T>::data() const noexcept {
  return reinterpret_cast<T *>(slicePtr(this));
}

template <typename T>
std::size_t Slice<T>::size() const noexcept {
  return sliceLen(this);
}

template <typename T>
std::size_t Slice<T>::length() const noexcept {
  return this->size();
}

template <typename T>
bool Slice<T>::empty() const noexcept {
  return this->size() == 0;
}

template <typename T>
T &Slice<T>::operator[](std::size_t n) const noexcept {
  assert(n < this->size());
  auto ptr = static_cast<char *>(slicePtr(this)) + size_of<T>() * n;
  return *reinterpret_cast<T *>(ptr);
}

template <typename T>
T &Slice<T>::at(std::size_t n) const {
  if (n >= this->size()) {
    panic<std::out_of_range>("rust::Slice index out of range");
  }
  return (*this)[n];
}

template <typename T>
T &Slice<T>::front() const noexcept {
  assert(!this->empty());
  return (*this)[0];
}

template <typename T>
T &Slice<T>::back() const noexcept {
  assert(!this->empty());
  return (*this)[this->size() - 1];
}

template <typename T>
typename Slice<T>::iterator::reference
Slice<T>::iterator::operator*() const noexcept {
  return *static_cast<T *>(this->pos);
}

template <typename T>
typename Slice<T>::iterator::pointer
Slice<T>::iterator::operator->() const noexcept {
  return static_cast<T *>(this->pos);
}

template <typename T>
typename Slice<T>::iterator::reference Slice<T>::iterator::operator[](
    typename Slice<T>::iterator::difference_type n) const noexcept {
  auto ptr = static_cast<char *>(this->pos) + this->stride * n;
  return *reinterpret_cast<T *>(ptr);
}

template <typename T>
typename Slice<T>::iterator &Slice<T>::iterator::operator++() noexcept {
  this->pos = static_cast<char *>(this->pos) + this->stride;
  return *this;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::iterator::operator++(int) noexcept {
  auto ret = iterator(*this);
  this->pos = static_cast<char *>(this->pos) + this->stride;
  return ret;
}

template <typename T>
typename Slice<T>::iterator &Slice<T>::iterator::operator--() noexcept {
  this->pos = static_cast<char *>(this->pos) - this->stride;
  return *this;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::iterator::operator--(int) noexcept {
  auto ret = iterator(*this);
  this->pos = static_cast<char *>(this->pos) - this->stride;
  return ret;
}

template <typename T>
typename Slice<T>::iterator &Slice<T>::iterator::operator+=(
    typename Slice<T>::iterator::difference_type n) noexcept {
  this->pos = static_cast<char *>(this->pos) + this->stride * n;
  return *this;
}

template <typename T>
typename Slice<T>::iterator &Slice<T>::iterator::operator-=(
    typename Slice<T>::iterator::difference_type n) noexcept {
  this->pos = static_cast<char *>(this->pos) - this->stride * n;
  return *this;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::iterator::operator+(
    typename Slice<T>::iterator::difference_type n) const noexcept {
  auto ret = iterator(*this);
  ret.pos = static_cast<char *>(this->pos) + this->stride * n;
  return ret;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::iterator::operator-(
    typename Slice<T>::iterator::difference_type n) const noexcept {
  auto ret = iterator(*this);
  ret.pos = static_cast<char *>(this->pos) - this->stride * n;
  return ret;
}

template <typename T>
typename Slice<T>::iterator::difference_type
Slice<T>::iterator::operator-(const iterator &other) const noexcept {
  auto diff = std::distance(static_cast<char *>(other.pos),
                            static_cast<char *>(this->pos));
  return diff / static_cast<typename Slice<T>::iterator::difference_type>(
                    this->stride);
}

template <typename T>
bool Slice<T>::iterator::operator==(const iterator &other) const noexcept {
  return this->pos == other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator!=(const iterator &other) const noexcept {
  return this->pos != other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator<(const iterator &other) const noexcept {
  return this->pos < other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator<=(const iterator &other) const noexcept {
  return this->pos <= other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator>(const iterator &other) const noexcept {
  return this->pos > other.pos;
}

template <typename T>
bool Slice<T>::iterator::operator>=(const iterator &other) const noexcept {
  return this->pos >= other.pos;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::begin() const noexcept {
  iterator it;
  it.pos = slicePtr(this);
  it.stride = size_of<T>();
  return it;
}

template <typename T>
typename Slice<T>::iterator Slice<T>::end() const noexcept {
  iterator it = this->begin();
  it.pos = static_cast<char *>(it.pos) + it.stride * this->size();
  return it;
}

template <typename T>
void Slice<T>::swap(Slice &rhs) noexcept {
  std::swap(*this, rhs);
}
#endif // CXXBRIDGE1_RUST_SLICE

#ifndef CXXBRIDGE1_RUST_BOX
#define CXXBRIDGE1_RUST_BOX
template <typename T>
class Box final {
public:
  using element_type = T;
  using const_pointer =
      typename std::add_pointer<typename std::add_const<T>::type>::type;
  using pointer = typename std::add_pointer<T>::type;

  Box() = delete;
  Box(Box &&) noexcept;
  ~Box() noexcept;

  explicit Box(const T &);
  explicit Box(T &&);

  Box &operator=(Box &&) & noexcept;

  const T *operator->() const noexcept;
  const T &operator*() const noexcept;
  T *operator->() noexcept;
  T &operator*() noexcept;

  template <typename... Fields>
  static Box in_place(Fields &&...);

  void swap(Box &) noexcept;

  static Box from_raw(T *) noexcept;

  T *into_raw() noexcept;

  /* Deprecated */ using value_type = element_type;

private:
  class uninit;
  class allocation;
  Box(uninit) noexcept;
  void drop() noexcept;

  friend void swap(Box &lhs, Box &rhs) noexcept { lhs.swap(rhs); }

  T *ptr;
};

template <typename T>
class Box<T>::uninit {};

template <typename T>
class Box<T>::allocation {
  static T *alloc() noexcept;
  static void dealloc(T *) noexcept;

public:
  allocation() noexcept : ptr(alloc()) {}
  ~allocation() noexcept {
    if (this->ptr) {
      dealloc(this->ptr);
    }
  }
  T *ptr;
};

template <typename T>
Box<T>::Box(Box &&other) noexcept : ptr(other.ptr) {
  other.ptr = nullptr;
}

template <typename T>
Box<T>::Box(const T &val) {
  allocation alloc;
  ::new (alloc.ptr) T(val);
  this->ptr = alloc.ptr;
  alloc.ptr = nullptr;
}

template <typename T>
Box<T>::Box(T &&val) {
  allocation alloc;
  ::new (alloc.ptr) T(std::move(val));
  this->ptr = alloc.ptr;
  alloc.ptr = nullptr;
}

template <typename T>
Box<T>::~Box() noexcept {
  if (this->ptr) {
    this->drop();
  }
}

template <typename T>
Box<T> &Box<T>::operator=(Box &&other) & noexcept {
  if (this->ptr) {
    this->drop();
  }
  this->ptr = other.ptr;
  other.ptr = nullptr;
  return *this;
}

template <typename T>
const T *Box<T>::operator->() const noexcept {
  return this->ptr;
}

template <typename T>
const T &Box<T>::operator*() const noexcept {
  return *this->ptr;
}

template <typename T>
T *Box<T>::operator->() noexcept {
  return this->ptr;
}

template <typename T>
T &Box<T>::operator*() noexcept {
  return *this->ptr;
}

template <typename T>
template <typename... Fields>
Box<T> Box<T>::in_place(Fields &&...fields) {
  allocation alloc;
  auto ptr = alloc.ptr;
  ::new (ptr) T{std::forward<Fields>(fields)...};
  alloc.ptr = nullptr;
  return from_raw(ptr);
}

template <typename T>
void Box<T>::swap(Box &rhs) noexcept {
  using std::swap;
  swap(this->ptr, rhs.ptr);
}

template <typename T>
Box<T> Box<T>::from_raw(T *raw) noexcept {
  Box box = uninit{};
  box.ptr = raw;
  return box;
}

template <typename T>
T *Box<T>::into_raw() noexcept {
  T *raw = this->ptr;
  this->ptr = nullptr;
  return raw;
}

template <typename T>
Box<T>::Box(uninit) noexcept {}
#endif // CXXBRIDGE1_RUST_BOX

#ifndef CXXBRIDGE1_RUST_BITCOPY_T
#define CXXBRIDGE1_RUST_BITCOPY_T
struct unsafe_bitcopy_t final {
  explicit unsafe_bitcopy_t() = default;
};
#endif // CXXBRIDGE1_RUST_BITCOPY_T

#ifndef CXXBRIDGE1_RUST_VEC
#define CXXBRIDGE1_RUST_VEC
template <typename T>
class Vec final {
public:
  using value_type = T;

  Vec() noexcept;
  Vec(std::initializer_list<T>);
  Vec(const Vec &);
  Vec(Vec &&) noexcept;
  ~Vec() noexcept;

  Vec &operator=(Vec &&) & noexcept;
  Vec &operator=(const Vec &) &;

  std::size_t size() const noexcept;
  bool empty() const noexcept;
  const T *data() const noexcept;
  T *data() noexcept;
  std::size_t capacity() const noexcept;

  const T &operator[](std::size_t n) const noexcept;
  const T &at(std::size_t n) const;
  const T &front() const noexcept;
  const T &back() const noexcept;

  T &operator[](std::size_t n) noexcept;
  T &at(std::size_t n);
  T &front() noexcept;
  T &back() noexcept;

  void reserve(std::size_t new_cap);
  void push_back(const T &value);
  void push_back(T &&value);
  template <typename... Args>
  void emplace_back(Args &&...args);
  void truncate(std::size_t len);
  void clear();

  using iterator = typename Slice<T>::iterator;
  iterator begin() noexcept;
  iterator end() noexcept;

  using const_iterator = typename Slice<const T>::iterator;
  const_iterator begin() const noexcept;
  const_iterator end() const noexcept;
  const_iterator cbegin() const noexcept;
  const_iterator cend() const noexcept;

  void swap(Vec &) noexcept;

  Vec(unsafe_bitcopy_t, const Vec &) noexcept;

private:
  void reserve_total(std::size_t new_cap) noexcept;
  void set_len(std::size_t len) noexcept;
  void drop() noexcept;

  friend void swap(Vec &lhs, Vec &rhs) noexcept { lhs.swap(rhs); }

  std::array<std::uintptr_t, 3> repr;
};

template <typename T>
Vec<T>::Vec(std::initializer_list<T> init) : Vec{} {
  this->reserve_total(init.size());
  std::move(init.begin(), init.end(), std::back_inserter(*this));
}

template <typename T>
Vec<T>::Vec(const Vec &other) : Vec() {
  this->reserve_total(other.size());
  std::copy(other.begin(), other.end(), std::back_inserter(*this));
}

template <typename T>
Vec<T>::Vec(Vec &&other) noexcept : repr(other.repr) {
  new (&other) Vec();
}

template <typename T>
Vec<T>::~Vec() noexcept {
  this->drop();
}

template <typename T>
Vec<T> &Vec<T>::operator=(Vec &&other) & noexcept {
  this->drop();
  this->repr = other.repr;
  new (&other) Vec();
  return *this;
}

template <typename T>
Vec<T> &Vec<T>::operator=(const Vec &other) & {
  if (this != &other) {
    this->drop();
    new (this) Vec(other);
  }
  return *this;
}

template <typename T>
bool Vec<T>::empty() const noexcept {
  return this->size() == 0;
}

template <typename T>
const T &Vec<T>::operator[](std::size_t n) const noexcept {
  assert(n < this->size());
  auto data = reinterpret_cast<const char *>(this->data());
  return *reinterpret_cast<const T *>(data + n * size_of<T>());
}

template <typename T>
const T &Vec<T>::at(std::size_t n) const {
  if (n >= this->size()) {
    panic<std::out_of_range>("rust::Vec index out of range");
  }
  return (*this)[n];
}

template <typename T>
const T &Vec<T>::front() const noexcept {
  assert(!this->empty());
  return (*this)[0];
}

template <typename T>
const T &Vec<T>::back() const noexcept {
  assert(!this->empty());
  return (*this)[this->size() - 1];
}

template <typename T>
T &Vec<T>::operator[](std::size_t n) noexcept {
  assert(n < this->size());
  auto data = reinterpret_cast<char *>(this->data());
  return *reinterpret_cast<T *>(data + n * size_of<T>());
}

template <typename T>
T &Vec<T>::at(std::size_t n) {
  if (n >= this->size()) {
    panic<std::out_of_range>("rust::Vec index out of range");
  }
  return (*this)[n];
}

template <typename T>
T &Vec<T>::front() noexcept {
  assert(!this->empty());
  return (*this)[0];
}

template <typename T>
T &Vec<T>::back() noexcept {
  assert(!this->empty());
  return (*this)[this->size() - 1];
}

template <typename T>
void Vec<T>::reserve(std::size_t new_cap) {
  this->reserve_total(new_cap);
}

template <typename T>
void Vec<T>::push_back(const T &value) {
  this->emplace_back(value);
}

template <typename T>
void Vec<T>::push_back(T &&value) {
  this->emplace_back(std::move(value));
}

template <typename T>
template <typename... Args>
void Vec<T>::emplace_back(Args &&...args) {
  auto size = this->size();
  this->reserve_total(size + 1);
  ::new (reinterpret_cast<T *>(reinterpret_cast<char *>(this->data()) +
                               size * size_of<T>()))
      T(std::forward<Args>(args)...);
  this->set_len(size + 1);
}

template <typename T>
void Vec<T>::clear() {
  this->truncate(0);
}

template <typename T>
typename Vec<T>::iterator Vec<T>::begin() noexcept {
  return Slice<T>(this->data(), this->size()).begin();
}

template <typename T>
typename Vec<T>::iterator Vec<T>::end() noexcept {
  return Slice<T>(this->data(), this->size()).end();
}

template <typename T>
typename Vec<T>::const_iterator Vec<T>::begin() const noexcept {
  return this->cbegin();
}

template <typename T>
typename Vec<T>::const_iterator Vec<T>::end() const noexcept {
  return this->cend();
}

template <typename T>
typename Vec<T>::const_iterator Vec<T>::cbegin() const noexcept {
  return Slice<const T>(this->data(), this->size()).begin();
}

template <typename T>
typename Vec<T>::const_iterator Vec<T>::cend() const noexcept {
  return Slice<const T>(this->data(), this->size()).end();
}

template <typename T>
void Vec<T>::swap(Vec &rhs) noexcept {
  using std::swap;
  swap(this->repr, rhs.repr);
}

template <typename T>
Vec<T>::Vec(unsafe_bitcopy_t, const Vec &bits) noexcept : repr(bits.repr) {}
#endif // CXXBRIDGE1_RUST_VEC

#ifndef CXXBRIDGE1_RUST_OPAQUE
#define CXXBRIDGE1_RUST_OPAQUE
class Opaque {
public:
  Opaque() = delete;
  Opaque(const Opaque &) = delete;
  ~Opaque() = delete;
};
#endif // CXXBRIDGE1_RUST_OPAQUE

#ifndef CXXBRIDGE1_IS_COMPLETE
#define CXXBRIDGE1_IS_COMPLETE
namespace detail {
namespace {
template <typename T, typename = std::size_t>
struct is_complete : std::false_type {};
template <typename T>
struct is_complete<T, decltype(sizeof(T))> : std::true_type {};
} // namespace
} // namespace detail
#endif // CXXBRIDGE1_IS_COMPLETE

#ifndef CXXBRIDGE1_LAYOUT
#define CXXBRIDGE1_LAYOUT
class layout {
  template <typename T>
  friend std::size_t size_of();
  template <typename T>
  friend std::size_t align_of();
  template <typename T>
  static typename std::enable_if<std::is_base_of<Opaque, T>::value,
                                 std::size_t>::type
  do_size_of() {
    return T::layout::size();
  }
  template <typename T>
  static typename std::enable_if<!std::is_base_of<Opaque, T>::value,
                                 std::size_t>::type
  do_size_of() {
    return sizeof(T);
  }
  template <typename T>
  static
      typename std::enable_if<detail::is_complete<T>::value, std::size_t>::type
      size_of() {
    return do_size_of<T>();
  }
  template <typename T>
  static typename std::enable_if<std::is_base_of<Opaque, T>::value,
                                 std::size_t>::type
  do_align_of() {
    return T::layout::align();
  }
  template <typename T>
  static typename std::enable_if<!std::is_base_of<Opaque, T>::value,
                                 std::size_t>::type
  do_align_of() {
    return alignof(T);
  }
  template <typename T>
  static
      typename std::enable_if<detail::is_complete<T>::value, std::size_t>::type
      align_of() {
    return do_align_of<T>();
  }
};

template <typename T>
std::size_t size_of() {
  return layout::size_of<T>();
}

template <typename T>
std::size_t align_of() {
  return layout::align_of<T>();
}
#endif // CXXBRIDGE1_LAYOUT
} // namespace cxxbridge1
} // namespace rust

#if __cplusplus >= 201402L
#define CXX_DEFAULT_VALUE(value) = value
#else
#define CXX_DEFAULT_VALUE(value)
#endif

namespace tessera {
  namespace bridge {
    enum class ConnState : ::std::uint8_t;
    enum class DeviceType : ::std::uint8_t;
    enum class EventKind : ::std::uint8_t;
    enum class JobState : ::std::uint8_t;
    struct RuntimeStatus;
    struct Usage;
    struct ChainState;
    struct DeviceInfo;
    struct Policy;
    struct AgentConfig;
    struct Event;
    struct InputOutcome;
    struct OutputSent;
    struct BufferSpec;
    struct SpecConstant;
    struct JobInfo;
    struct AgentStats;
    struct DeviceEntry;
    struct DispatcherOptions;
    struct Benchmark;
    struct KernelBuffer;
    struct KernelJob;
    struct KernelOutput;
    struct KernelResult;
    struct JobFailure;
    struct ReceiptInfo;
    struct EvidenceInfo;
    struct Runtime;
    struct RuntimeRemote;
    struct Dispatcher;
    struct Agent;
    struct ChainVerifier;
  }
}

namespace tessera {
namespace bridge {
#ifndef CXXBRIDGE1_ENUM_tessera$bridge$ConnState
#define CXXBRIDGE1_ENUM_tessera$bridge$ConnState
// The connection's state (`TESSERA_CONN_*`).
enum class ConnState : ::std::uint8_t {
  // No transport.
  Disconnected = 1,
  // `Hello` sent; waiting for `Welcome`.
  AwaitingWelcome = 2,
  // Evidence sent; waiting for `Ready`.
  AwaitingReady = 3,
  // Session established.
  Ready = 4,
  // Goodbye exchanged.
  Closed = 5,
};
#endif // CXXBRIDGE1_ENUM_tessera$bridge$ConnState

#ifndef CXXBRIDGE1_ENUM_tessera$bridge$DeviceType
#define CXXBRIDGE1_ENUM_tessera$bridge$DeviceType
// What kind of device (`TESSERA_DEVICE_*`).
enum class DeviceType : ::std::uint8_t {
  // Unknown or other.
  Other = 0,
  // A GPU sharing memory with the host.
  IntegratedGpu = 1,
  // A GPU with its own memory.
  DiscreteGpu = 2,
  // A GPU in a virtual machine.
  VirtualGpu = 3,
  // A CPU implementation.
  Cpu = 4,
};
#endif // CXXBRIDGE1_ENUM_tessera$bridge$DeviceType

#ifndef CXXBRIDGE1_ENUM_tessera$bridge$EventKind
#define CXXBRIDGE1_ENUM_tessera$bridge$EventKind
// What the host must do (`TESSERA_EVENT_*`); `None` when no event waits.
enum class EventKind : ::std::uint8_t {
  // No event.
  None = 0,
  // The session is established.
  Ready = 1,
  // A job was assigned: prepare its buffers.
  JobAssigned = 2,
  // Verified input bytes to read now.
  JobData = 3,
  // All inputs arrived and verified: run the kernel.
  RunJob = 4,
  // Stop the job and drop its buffers.
  CancelJob = 5,
  // Write the job's outputs again, then finish it.
  ResendOutputs = 6,
  // Store the job's result record durably, then confirm.
  PersistResult = 7,
  // The coordinator holds the result.
  ResultAcknowledged = 8,
  // The coordinator refused the result.
  ResultRefused = 9,
  // The coordinator reported an error.
  PeerError = 10,
  // Close the transport.
  Disconnect = 11,
};
#endif // CXXBRIDGE1_ENUM_tessera$bridge$EventKind

#ifndef CXXBRIDGE1_ENUM_tessera$bridge$JobState
#define CXXBRIDGE1_ENUM_tessera$bridge$JobState
// A job's state on the agent (`TESSERA_JOB_*`).
enum class JobState : ::std::uint8_t {
  // Offer accepted; waiting for the assignment.
  Accepted = 1,
  // Kernel and inputs arriving.
  Receiving = 2,
  // Inputs verified; the host runs the kernel.
  Running = 3,
  // The host writes outputs.
  Uploading = 4,
  // Signed; waiting for the coordinator's acknowledgement.
  AwaitingAck = 5,
};
#endif // CXXBRIDGE1_ENUM_tessera$bridge$JobState

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$RuntimeStatus
#define CXXBRIDGE1_STRUCT_tessera$bridge$RuntimeStatus
// What a provider runtime's operator sees.
struct RuntimeStatus final {
  // The connection's state.
  ::tessera::bridge::ConnState state;
  // The runtime has drained and stopped.
  bool finished CXX_DEFAULT_VALUE(false);
  // The device takes no new work now.
  bool device_unavailable CXX_DEFAULT_VALUE(false);
  // Jobs completed and acknowledged.
  ::std::uint64_t jobs_completed CXX_DEFAULT_VALUE(0);
  // Jobs failed (acknowledged).
  ::std::uint64_t jobs_failed CXX_DEFAULT_VALUE(0);
  // Jobs held now.
  ::std::uint64_t active_jobs CXX_DEFAULT_VALUE(0);
  // Sum of the prices of acknowledged jobs.
  ::std::uint64_t earnings CXX_DEFAULT_VALUE(0);
  // Sessions established since start.
  ::std::uint64_t sessions CXX_DEFAULT_VALUE(0);
  // The coordinator's address.
  ::rust::String coordinator;
  // The device's name.
  ::rust::String device;
  // The last connection or store error, or empty.
  ::rust::String last_error;

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$RuntimeStatus

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$Usage
#define CXXBRIDGE1_STRUCT_tessera$bridge$Usage
// Metered usage of a job.
struct Usage final {
  // GPU time, microseconds.
  ::std::uint64_t gpu_time_us CXX_DEFAULT_VALUE(0);
  // Dispatch commands submitted.
  ::std::uint32_t dispatches CXX_DEFAULT_VALUE(0);
  // Bytes received (kernel and inputs).
  ::std::uint64_t bytes_in CXX_DEFAULT_VALUE(0);
  // Bytes returned (outputs).
  ::std::uint64_t bytes_out CXX_DEFAULT_VALUE(0);

  bool operator==(Usage const &) const noexcept;
  bool operator!=(Usage const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$Usage

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$ChainState
#define CXXBRIDGE1_STRUCT_tessera$bridge$ChainState
// A position in a device key's receipt chain.
struct ChainState final {
  // Sequence number of the next receipt (the first is 1).
  ::std::uint64_t next_sequence CXX_DEFAULT_VALUE(0);
  // Hash of the last signed receipt (zeros before the first).
  ::std::array<::std::uint8_t, 32> prev_hash;

  bool operator==(ChainState const &) const noexcept;
  bool operator!=(ChainState const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$ChainState

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$DeviceInfo
#define CXXBRIDGE1_STRUCT_tessera$bridge$DeviceInfo
// What a device is and can do, as evidence states it.
struct DeviceInfo final {
  // Device name, at most 64 bytes of UTF-8.
  ::rust::String name;
  // PCI vendor id.
  ::std::uint32_t vendor_id CXX_DEFAULT_VALUE(0);
  // Vendor's device id.
  ::std::uint32_t device_id CXX_DEFAULT_VALUE(0);
  // Driver version, vendor-encoded.
  ::std::uint32_t driver_version CXX_DEFAULT_VALUE(0);
  // Vulkan API version the device supports.
  ::std::uint32_t api_version CXX_DEFAULT_VALUE(0);
  // What kind of device.
  ::tessera::bridge::DeviceType device_type;
  // Feature bits (`PROTOCOL.md`, "Device capabilities").
  ::std::uint32_t features CXX_DEFAULT_VALUE(0);
  // Bytes of device-local memory.
  ::std::uint64_t device_local_bytes CXX_DEFAULT_VALUE(0);
  // Bytes of host-visible memory.
  ::std::uint64_t host_visible_bytes CXX_DEFAULT_VALUE(0);
  // Largest workgroup size in x, y, z.
  ::std::array<::std::uint32_t, 3> max_workgroup_size;
  // Most workgroups in one dispatch in x, y, z.
  ::std::array<::std::uint32_t, 3> max_workgroup_count;
  // Most invocations in one workgroup.
  ::std::uint32_t max_invocations CXX_DEFAULT_VALUE(0);
  // Bytes of workgroup shared memory.
  ::std::uint32_t max_shared_memory CXX_DEFAULT_VALUE(0);
  // Largest storage buffer binding, in bytes.
  ::std::uint64_t max_storage_buffer_range CXX_DEFAULT_VALUE(0);
  // Subgroup size.
  ::std::uint32_t subgroup_size CXX_DEFAULT_VALUE(0);
  // Measured copy bandwidth, MB/s (0: not measured).
  ::std::uint32_t copy_mbps CXX_DEFAULT_VALUE(0);
  // Measured FMA throughput, MFLOP/s (0: not measured).
  ::std::uint32_t fma_mflops CXX_DEFAULT_VALUE(0);

  bool operator==(DeviceInfo const &) const noexcept;
  bool operator!=(DeviceInfo const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$DeviceInfo

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$Policy
#define CXXBRIDGE1_STRUCT_tessera$bridge$Policy
// Which offers to take, what to charge, and the session timers.
struct Policy final {
  // Jobs held at once, 1 to `tessera::max_jobs` (32).
  ::std::uint32_t max_concurrent CXX_DEFAULT_VALUE(0);
  // Fixed fee per job.
  ::std::uint64_t price_base CXX_DEFAULT_VALUE(0);
  // Price per GPU millisecond.
  ::std::uint64_t price_per_gpu_ms CXX_DEFAULT_VALUE(0);
  // Price per MiB received.
  ::std::uint64_t price_per_mib_in CXX_DEFAULT_VALUE(0);
  // Price per MiB returned.
  ::std::uint64_t price_per_mib_out CXX_DEFAULT_VALUE(0);
  // The least charged for any job.
  ::std::uint64_t floor CXX_DEFAULT_VALUE(0);
  // Most bytes received for one job.
  ::std::uint64_t max_bytes_in CXX_DEFAULT_VALUE(0);
  // Most bytes returned for one job.
  ::std::uint64_t max_bytes_out CXX_DEFAULT_VALUE(0);
  // Heartbeat interval, milliseconds.
  ::std::uint64_t heartbeat_interval_ms CXX_DEFAULT_VALUE(0);
  // Silence after which the coordinator is given up, milliseconds.
  ::std::uint64_t peer_timeout_ms CXX_DEFAULT_VALUE(0);

  bool operator==(Policy const &) const noexcept;
  bool operator!=(Policy const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$Policy

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$AgentConfig
#define CXXBRIDGE1_STRUCT_tessera$bridge$AgentConfig
// The sans-IO agent's configuration.
struct AgentConfig final {
  // Agent software version: major, minor, patch.
  ::std::array<::std::uint16_t, 3> agent_version;
  // Random id chosen at each boot.
  ::std::array<::std::uint8_t, 16> boot_id;
  // What the device is.
  ::tessera::bridge::DeviceInfo device;
  // Offers, prices and timers.
  ::tessera::bridge::Policy policy;
  // Hold each signed result back until the host stored it.
  bool persist_results CXX_DEFAULT_VALUE(false);

  bool operator==(AgentConfig const &) const noexcept;
  bool operator!=(AgentConfig const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$AgentConfig

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$Event
#define CXXBRIDGE1_STRUCT_tessera$bridge$Event
// An event of the sans-IO agent; fields as `tessera_event` has them.
struct Event final {
  // What happened; `None` when nothing.
  ::tessera::bridge::EventKind kind;
  // The job, or 0.
  ::std::uint64_t job CXX_DEFAULT_VALUE(0);
  // `JobData`: 0 for the kernel, `i + 1` for buffer `i`.
  ::std::uint32_t stream CXX_DEFAULT_VALUE(0);
  // `JobData`: byte offset in the stream.
  ::std::uint64_t offset CXX_DEFAULT_VALUE(0);
  // `JobData`: bytes readable now.
  ::std::size_t len CXX_DEFAULT_VALUE(0);
  // `CancelJob`: `TESSERA_CANCEL_*`; `Disconnect`: `TESSERA_DISCONNECT_*`.
  ::std::uint32_t reason CXX_DEFAULT_VALUE(0);
  // The peer's code, for the kinds that carry one.
  ::std::uint32_t code CXX_DEFAULT_VALUE(0);

  bool operator==(Event const &) const noexcept;
  bool operator!=(Event const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$Event

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$InputOutcome
#define CXXBRIDGE1_STRUCT_tessera$bridge$InputOutcome
// How `Agent::handle_input` went: bytes taken, and 0 or the error's code.
struct InputOutcome final {
  // Bytes consumed, on success and on error.
  ::std::size_t consumed CXX_DEFAULT_VALUE(0);
  // 0, or the code of the error.
  ::std::uint32_t code CXX_DEFAULT_VALUE(0);
  // The error's words, or empty.
  ::rust::String message;

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$InputOutcome

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$OutputSent
#define CXXBRIDGE1_STRUCT_tessera$bridge$OutputSent
// What `Agent::send_output` did.
struct OutputSent final {
  // Output bytes taken.
  ::std::size_t taken CXX_DEFAULT_VALUE(0);
  // Bytes written into `out`, to send.
  ::std::size_t written CXX_DEFAULT_VALUE(0);

  bool operator==(OutputSent const &) const noexcept;
  bool operator!=(OutputSent const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$OutputSent

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$BufferSpec
#define CXXBRIDGE1_STRUCT_tessera$bridge$BufferSpec
// One storage buffer of a job's layout.
struct BufferSpec final {
  // Binding in descriptor set 0.
  ::std::uint32_t binding CXX_DEFAULT_VALUE(0);
  // Size in bytes.
  ::std::uint64_t len CXX_DEFAULT_VALUE(0);
  // Bytes of initial contents sent as input (the rest is zero).
  ::std::uint64_t init_len CXX_DEFAULT_VALUE(0);
  // Whether it is returned as an output.
  bool readback CXX_DEFAULT_VALUE(false);

  bool operator==(BufferSpec const &) const noexcept;
  bool operator!=(BufferSpec const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$BufferSpec

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$SpecConstant
#define CXXBRIDGE1_STRUCT_tessera$bridge$SpecConstant
// A specialization constant: its id and 32-bit value.
struct SpecConstant final {
  // The constant id.
  ::std::uint32_t id CXX_DEFAULT_VALUE(0);
  // The value (narrower constants take the low bytes).
  ::std::uint32_t value CXX_DEFAULT_VALUE(0);

  bool operator==(SpecConstant const &) const noexcept;
  bool operator!=(SpecConstant const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$SpecConstant

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$JobInfo
#define CXXBRIDGE1_STRUCT_tessera$bridge$JobInfo
// What the agent knows of a job.
struct JobInfo final {
  // The job's state.
  ::tessera::bridge::JobState state;
  // Whether the job has a deadline now.
  bool has_deadline CXX_DEFAULT_VALUE(false);
  // The deadline (microseconds, the host's time base).
  ::std::uint64_t deadline_us CXX_DEFAULT_VALUE(0);
  // Whether the assignment arrived (the fields below are set).
  bool assigned CXX_DEFAULT_VALUE(false);
  // SPIR-V bytes (stream 0).
  ::std::uint32_t kernel_len CXX_DEFAULT_VALUE(0);
  // The GLCompute entry point.
  ::rust::String entry_point;
  // Specialization constants.
  ::rust::Vec<::tessera::bridge::SpecConstant> specialization;
  // Push constant bytes.
  ::rust::Vec<::std::uint8_t> push_constants;
  // Workgroup counts in x, y, z.
  ::std::array<::std::uint32_t, 3> grid;
  // The buffers.
  ::rust::Vec<::tessera::bridge::BufferSpec> buffers;
  // The requester's nonce.
  ::std::array<::std::uint8_t, 32> requester_nonce;

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$JobInfo

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$AgentStats
#define CXXBRIDGE1_STRUCT_tessera$bridge$AgentStats
// Counters of the sans-IO agent.
struct AgentStats final {
  // Offers accepted.
  ::std::uint64_t offers_accepted CXX_DEFAULT_VALUE(0);
  // Offers declined.
  ::std::uint64_t offers_declined CXX_DEFAULT_VALUE(0);
  // Jobs completed and acknowledged.
  ::std::uint64_t jobs_completed CXX_DEFAULT_VALUE(0);
  // Jobs failed (acknowledged).
  ::std::uint64_t jobs_failed CXX_DEFAULT_VALUE(0);
  // Results the coordinator refused.
  ::std::uint64_t results_refused CXX_DEFAULT_VALUE(0);
  // Sum of prices of acknowledged completed jobs.
  ::std::uint64_t earnings CXX_DEFAULT_VALUE(0);
  // Frames received.
  ::std::uint64_t frames_in CXX_DEFAULT_VALUE(0);
  // Frames queued for sending.
  ::std::uint64_t frames_out CXX_DEFAULT_VALUE(0);
  // Frames refused.
  ::std::uint64_t frames_refused CXX_DEFAULT_VALUE(0);

  bool operator==(AgentStats const &) const noexcept;
  bool operator!=(AgentStats const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$AgentStats

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$DeviceEntry
#define CXXBRIDGE1_STRUCT_tessera$bridge$DeviceEntry
// One Vulkan device as the loader lists it.
struct DeviceEntry final {
  // Its index (`DispatcherOptions::device_index`).
  ::std::uint32_t index CXX_DEFAULT_VALUE(0);
  // The driver's name for it.
  ::rust::String name;
  // What kind of device.
  ::tessera::bridge::DeviceType device_type;
  // PCI vendor id.
  ::std::uint32_t vendor_id CXX_DEFAULT_VALUE(0);
  // Vendor's device id.
  ::std::uint32_t device_id CXX_DEFAULT_VALUE(0);
  // Highest Vulkan version it supports.
  ::std::uint32_t api_version CXX_DEFAULT_VALUE(0);

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$DeviceEntry

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$DispatcherOptions
#define CXXBRIDGE1_STRUCT_tessera$bridge$DispatcherOptions
// How to open a dispatcher.
struct DispatcherOptions final {
  // Device index, or -1 for the default (or `device_name`).
  ::std::int32_t device_index CXX_DEFAULT_VALUE(0);
  // Part of the device name (case-insensitive), or empty.
  ::rust::String device_name;
  // Run the Khronos validation layer (slow).
  bool validation CXX_DEFAULT_VALUE(false);
  // Run the Khronos SPIR-V validator on every new kernel.
  bool spirv_val_gate CXX_DEFAULT_VALUE(false);
  // The `spirv-val` program, or empty for the one on `PATH`.
  ::rust::String spirv_val_path;
  // Most bytes of buffers one job may use.
  ::std::uint64_t memory_budget CXX_DEFAULT_VALUE(0);
  // Run the start-up benchmark when opening.
  bool run_benchmark CXX_DEFAULT_VALUE(false);

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$DispatcherOptions

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$Benchmark
#define CXXBRIDGE1_STRUCT_tessera$bridge$Benchmark
// The start-up benchmark's figures.
struct Benchmark final {
  // Copy bandwidth, GB/s.
  double copy_gbps CXX_DEFAULT_VALUE(0);
  // FMA throughput, GFLOP/s.
  double fma_gflops CXX_DEFAULT_VALUE(0);

  bool operator==(Benchmark const &) const noexcept;
  bool operator!=(Benchmark const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$Benchmark

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$KernelBuffer
#define CXXBRIDGE1_STRUCT_tessera$bridge$KernelBuffer
// One storage buffer of a kernel job.
struct KernelBuffer final {
  // Binding in descriptor set 0.
  ::std::uint32_t binding CXX_DEFAULT_VALUE(0);
  // Bytes the kernel sees.
  ::std::uint64_t len CXX_DEFAULT_VALUE(0);
  // Initial contents (at most `len` bytes; the rest is zero).
  ::rust::Slice<::std::uint8_t const> init;
  // Whether the final contents are returned.
  bool readback CXX_DEFAULT_VALUE(false);

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$KernelBuffer

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$KernelJob
#define CXXBRIDGE1_STRUCT_tessera$bridge$KernelJob
// An untrusted compute job.
struct KernelJob final {
  // SPIR-V module bytes.
  ::rust::Slice<::std::uint8_t const> spirv;
  // The GLCompute entry point.
  ::rust::Str entry_point;
  // Specialization constants.
  ::rust::Slice<::tessera::bridge::SpecConstant const> specialization;
  // Push-constant bytes.
  ::rust::Slice<::std::uint8_t const> push_constants;
  // Workgroup counts in x, y, z.
  ::std::array<::std::uint32_t, 3> grid;
  // The buffers.
  ::rust::Slice<::tessera::bridge::KernelBuffer const> buffers;
  // Time limit, milliseconds.
  ::std::uint64_t timeout_ms CXX_DEFAULT_VALUE(0);

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$KernelJob

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$KernelOutput
#define CXXBRIDGE1_STRUCT_tessera$bridge$KernelOutput
// One read-back buffer's final contents.
struct KernelOutput final {
  // Its binding.
  ::std::uint32_t binding CXX_DEFAULT_VALUE(0);
  // Its bytes.
  ::rust::Vec<::std::uint8_t> data;

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$KernelOutput

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$KernelResult
#define CXXBRIDGE1_STRUCT_tessera$bridge$KernelResult
// What a kernel job returned.
struct KernelResult final {
  // The read-back buffers, in buffer order.
  ::rust::Vec<::tessera::bridge::KernelOutput> outputs;
  // What it used.
  ::tessera::bridge::Usage usage;

  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$KernelResult

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$JobFailure
#define CXXBRIDGE1_STRUCT_tessera$bridge$JobFailure
// After a failed run: what to report to the coordinator.
struct JobFailure final {
  // Whether the last run failed (the fields below are set).
  bool failed CXX_DEFAULT_VALUE(false);
  // The wire fail reason (`code - TESSERA_FAIL_BASE`).
  ::std::uint32_t reason CXX_DEFAULT_VALUE(0);
  // Its detail (the kernel rule for a rejection).
  ::std::uint32_t detail CXX_DEFAULT_VALUE(0);
  // The usage to report.
  ::tessera::bridge::Usage usage;

  bool operator==(JobFailure const &) const noexcept;
  bool operator!=(JobFailure const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$JobFailure

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$ReceiptInfo
#define CXXBRIDGE1_STRUCT_tessera$bridge$ReceiptInfo
// A verified receipt.
struct ReceiptInfo final {
  // How the job ended: 0 completed, else the wire fail reason.
  ::std::uint32_t status CXX_DEFAULT_VALUE(0);
  // The job.
  ::std::uint64_t job CXX_DEFAULT_VALUE(0);
  // The requester's nonce.
  ::std::array<::std::uint8_t, 32> requester_nonce;
  // What was dispatched.
  ::std::array<::std::uint8_t, 32> kernel_hash;
  // Merkle root over the input buffers' chunks.
  ::std::array<::std::uint8_t, 32> input_root;
  // Merkle root over the output buffers' chunks.
  ::std::array<::std::uint8_t, 32> output_root;
  // Total output bytes.
  ::std::uint64_t output_len CXX_DEFAULT_VALUE(0);
  // The same on every honest replica.
  ::std::array<::std::uint8_t, 32> result_hash;
  // Unique to the provider's key.
  ::std::array<::std::uint8_t, 32> result_seal;
  // Metered usage.
  ::tessera::bridge::Usage usage;
  // Price charged.
  ::std::uint64_t price CXX_DEFAULT_VALUE(0);
  // When the job started, microseconds.
  ::std::uint64_t started_at CXX_DEFAULT_VALUE(0);
  // When the job ended, microseconds.
  ::std::uint64_t ended_at CXX_DEFAULT_VALUE(0);
  // Hash of the evidence of the session that offered the job.
  ::std::array<::std::uint8_t, 32> evidence_hash;
  // The signing key's id.
  ::std::array<::std::uint8_t, 16> key_id;
  // Position in the key's receipt chain, from 1.
  ::std::uint64_t sequence CXX_DEFAULT_VALUE(0);
  // Hash of the key's previous receipt.
  ::std::array<::std::uint8_t, 32> prev_hash;

  bool operator==(ReceiptInfo const &) const noexcept;
  bool operator!=(ReceiptInfo const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$ReceiptInfo

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$EvidenceInfo
#define CXXBRIDGE1_STRUCT_tessera$bridge$EvidenceInfo
// Verified device evidence.
struct EvidenceInfo final {
  // The challenge the evidence answers.
  ::std::array<::std::uint8_t, 32> challenge;
  // The device's Ed25519 public key.
  ::std::array<::std::uint8_t, 32> public_key;
  // The key's id.
  ::std::array<::std::uint8_t, 16> key_id;
  // Agent software version.
  ::std::array<::std::uint16_t, 3> agent_version;
  // Random id the agent chose at its boot.
  ::std::array<::std::uint8_t, 16> boot_id;
  // When the evidence was made, microseconds.
  ::std::uint64_t issued_at CXX_DEFAULT_VALUE(0);
  // The provider's receipt chain when the evidence was made.
  ::tessera::bridge::ChainState chain;
  // What the device is and can do.
  ::tessera::bridge::DeviceInfo device;
  // The provider's X25519 public key for this session, to which
  // requesters seal jobs (all zeros: it takes no sealed jobs).
  ::std::array<::std::uint8_t, 32> enc_key;
  // The kind of hardware attestation report the evidence names
  // (`TESSERA_HARDWARE_REPORT_*`; 0: none).
  ::std::uint16_t hardware_report_kind CXX_DEFAULT_VALUE(0);
  // SHA-256 of that report's bytes.
  ::std::array<::std::uint8_t, 32> hardware_report_hash;

  bool operator==(EvidenceInfo const &) const noexcept;
  bool operator!=(EvidenceInfo const &) const noexcept;
  using IsRelocatable = ::std::true_type;
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$EvidenceInfo

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$Runtime
#define CXXBRIDGE1_STRUCT_tessera$bridge$Runtime
// A provider on the network, stepped from the host's loop.
struct Runtime final : public ::rust::Opaque {
  // One turn: waits at most `max_wait_ms`, then does the ready work.
  void step(::std::uint64_t max_wait_ms);

  // The descriptor to poll for reading.
  ::std::int32_t fd() const noexcept;

  // Milliseconds until the next step is due; -1 when none is.
  ::std::int64_t next_wakeup_ms() const noexcept;

  // Whether the device takes new work.
  void set_accepting_jobs(bool accepting) noexcept;

  // Asks the runtime to drain.
  void drain() const noexcept;

  // Whether the runtime has drained and stopped.
  bool is_finished() const noexcept;

  // The status as of the last step.
  ::tessera::bridge::RuntimeStatus status() const noexcept;

  // The status line.
  ::rust::String status_line() const noexcept;

  // A handle for other threads.
  ::rust::Box<::tessera::bridge::RuntimeRemote> remote() const noexcept;

  ~Runtime() = delete;

private:
  friend ::rust::layout;
  struct layout {
    static ::std::size_t size() noexcept;
    static ::std::size_t align() noexcept;
  };
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$Runtime

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$RuntimeRemote
#define CXXBRIDGE1_STRUCT_tessera$bridge$RuntimeRemote
// The thread-safe part of a runtime, for other threads.
struct RuntimeRemote final : public ::rust::Opaque {
  // Asks the runtime to drain (any thread).
  void drain() const noexcept;

  // Whether the device takes new work (any thread).
  void set_accepting_jobs(bool accepting) const noexcept;

  // Whether the runtime has drained and stopped (any thread).
  bool is_finished() const noexcept;

  // The status as of the last step (any thread).
  ::tessera::bridge::RuntimeStatus status() const noexcept;

  // The status line (any thread).
  ::rust::String status_line() const noexcept;

  ~RuntimeRemote() = delete;

private:
  friend ::rust::layout;
  struct layout {
    static ::std::size_t size() noexcept;
    static ::std::size_t align() noexcept;
  };
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$RuntimeRemote

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$Dispatcher
#define CXXBRIDGE1_STRUCT_tessera$bridge$Dispatcher
// Runs untrusted compute kernels on one Vulkan device.
struct Dispatcher final : public ::rust::Opaque {
  // What the device is, as the evidence states it.
  ::tessera::bridge::DeviceInfo device() const noexcept;

  // Runs the start-up benchmark (again).
  ::tessera::bridge::Benchmark benchmark();

  // Runs a job through both gates under its time limit.
  ::tessera::bridge::KernelResult run(::tessera::bridge::KernelJob const &job);

  // What to report after the last run failed.
  ::tessera::bridge::JobFailure last_failure() const noexcept;

  // Destroys abandoned devices whose kernels ended; how many remain.
  ::std::size_t reclaim() noexcept;

  ~Dispatcher() = delete;

private:
  friend ::rust::layout;
  struct layout {
    static ::std::size_t size() noexcept;
    static ::std::size_t align() noexcept;
  };
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$Dispatcher

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$Agent
#define CXXBRIDGE1_STRUCT_tessera$bridge$Agent
// The provider agent (sans-IO).
struct Agent final : public ::rust::Opaque {
  // Opens a session on a fresh transport.
  void connect(::std::uint64_t now_us);

  // The transport closed.
  void disconnected(::std::uint64_t now_us) noexcept;

  // Feeds received bytes.
  ::tessera::bridge::InputOutcome handle_input(::std::uint64_t now_us, ::rust::Slice<::std::uint8_t const> data) noexcept;

  // The next bytes to send into `out`: their length, 0 when none.
  ::std::size_t poll_transmit(::std::uint64_t now_us, ::rust::Slice<::std::uint8_t > out);

  // Bytes queued for sending.
  ::std::size_t pending_transmit() const noexcept;

  // The next event (`EventKind::None` when none).
  ::tessera::bridge::Event poll_event() noexcept;

  // When `handle_timeout` is due, microseconds; -1 when no timer runs.
  ::std::int64_t poll_timeout() const noexcept;

  // Runs the timers due at `now_us`.
  void handle_timeout(::std::uint64_t now_us) noexcept;

  // The input piece of the last `JobData` event of `job`.
  ::rust::Slice<::std::uint8_t const> input(::std::uint64_t job) const;

  // Copies that piece into `out`; its length.
  ::std::size_t read_input(::std::uint64_t job, ::rust::Slice<::std::uint8_t > out) const;

  // What the agent knows of `job`.
  ::tessera::bridge::JobInfo job_info(::std::uint64_t job) const;

  // Takes the next bytes of read-back buffer `buffer` and writes
  // their frames (after any queued ones) into `out`: send
  // `out[..written]`. `taken` 0: send, then call again with the same
  // bytes.
  ::tessera::bridge::OutputSent send_output(::std::uint64_t now_us, ::std::uint64_t job, ::std::uint32_t buffer, ::rust::Slice<::std::uint8_t const> data, ::rust::Slice<::std::uint8_t > out);

  // Ends a job whose outputs were all written: signs its receipt.
  void finish_job(::std::uint64_t now_us, ::std::uint64_t job, ::tessera::bridge::Usage const &usage);

  // Ends a job that could not run.
  void fail_job(::std::uint64_t now_us, ::std::uint64_t job, ::std::uint32_t reason, ::std::uint32_t detail, ::tessera::bridge::Usage const &usage);

  // Reports a running job's progress, in thousandths.
  void report_progress(::std::uint64_t now_us, ::std::uint64_t job, ::std::uint32_t permille);

  // The host stored the job's result record durably.
  void confirm_persisted(::std::uint64_t now_us, ::std::uint64_t job);

  // A signed job's encoded result record.
  ::rust::Vec<::std::uint8_t> result_record(::std::uint64_t job) const;

  // Gives back a result record stored before a restart.
  void restore_result(::rust::Slice<::std::uint8_t const> record);

  // Takes no more offers; says goodbye once every job is acknowledged.
  void drain(::std::uint64_t now_us);

  // Whether the device takes work now.
  void set_device_available(::std::uint64_t now_us, bool available) noexcept;

  // The connection's state.
  ::tessera::bridge::ConnState state() const noexcept;

  // Where the receipt chain stands.
  ::tessera::bridge::ChainState chain() const noexcept;

  // The agent's counters.
  ::tessera::bridge::AgentStats stats() const noexcept;

  // Jobs held now.
  ::std::size_t active_jobs() const noexcept;

  // The id of the agent's key.
  ::std::array<::std::uint8_t, 16> key_id() const noexcept;

  ~Agent() = delete;

private:
  friend ::rust::layout;
  struct layout {
    static ::std::size_t size() noexcept;
    static ::std::size_t align() noexcept;
  };
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$Agent

#ifndef CXXBRIDGE1_STRUCT_tessera$bridge$ChainVerifier
#define CXXBRIDGE1_STRUCT_tessera$bridge$ChainVerifier
// Checks one provider key's receipts in order.
struct ChainVerifier final : public ::rust::Opaque {
  // Verifies the next receipt; `expected_nonce` empty or 32 bytes.
  ::tessera::bridge::ReceiptInfo verify_next(::rust::Slice<::std::uint8_t const> receipt, ::rust::Slice<::std::uint8_t const> expected_nonce);

  // Where the chain stands.
  ::tessera::bridge::ChainState chain() const noexcept;

  ~ChainVerifier() = delete;

private:
  friend ::rust::layout;
  struct layout {
    static ::std::size_t size() noexcept;
    static ::std::size_t align() noexcept;
  };
};
#endif // CXXBRIDGE1_STRUCT_tessera$bridge$ChainVerifier

// The library's version as `major << 16 | minor << 8 | patch`.
::std::uint32_t version() noexcept;

// The name and meaning of a result code.
::rust::String result_text(::std::uint32_t code) noexcept;

// A provider from the operator's TOML file.
::rust::Box<::tessera::bridge::Runtime> new_runtime(::rust::Str path);

// The Vulkan devices.
::rust::Vec<::tessera::bridge::DeviceEntry> vulkan_devices();

// The default dispatcher options.
::tessera::bridge::DispatcherOptions dispatcher_options_default() noexcept;

// Opens a device for running kernels.
::rust::Box<::tessera::bridge::Dispatcher> open_dispatcher(::tessera::bridge::DispatcherOptions const &options);

// The default agent configuration.
::tessera::bridge::AgentConfig agent_config_default() noexcept;

// An agent signing with the Ed25519 key of a 32-byte seed.
::rust::Box<::tessera::bridge::Agent> new_agent_from_seed(::tessera::bridge::AgentConfig const &config, ::rust::Slice<::std::uint8_t const> seed, ::tessera::bridge::ChainState const &chain);

// An agent signing with the Ed25519 key of a PKCS#8 document.
::rust::Box<::tessera::bridge::Agent> new_agent_from_pkcs8(::tessera::bridge::AgentConfig const &config, ::rust::Slice<::std::uint8_t const> pkcs8, ::tessera::bridge::ChainState const &chain);

// A chain verifier for a 32-byte public key, from `chain`.
::rust::Box<::tessera::bridge::ChainVerifier> new_chain_verifier(::rust::Slice<::std::uint8_t const> public_key, ::tessera::bridge::ChainState const &chain);

// Verifies one receipt (signed alone or batched) under a 32-byte
// public key.
::tessera::bridge::ReceiptInfo verify_receipt(::rust::Slice<::std::uint8_t const> receipt, ::rust::Slice<::std::uint8_t const> public_key);

// The hash the next receipt of the chain names (of the signed
// bytes alone, of the payload batched).
::std::array<::std::uint8_t, 32> receipt_hash(::rust::Slice<::std::uint8_t const> receipt) noexcept;

// Verifies evidence answering a 32-byte challenge.
::tessera::bridge::EvidenceInfo verify_evidence(::rust::Slice<::std::uint8_t const> evidence, ::rust::Slice<::std::uint8_t const> challenge);

// Verifies evidence's form and signature only.
::tessera::bridge::EvidenceInfo open_evidence(::rust::Slice<::std::uint8_t const> evidence);

// The hash receipts bind evidence by.
::std::array<::std::uint8_t, 32> evidence_hash(::rust::Slice<::std::uint8_t const> evidence) noexcept;

// The kernel hash a receipt binds.
::std::array<::std::uint8_t, 32> kernel_hash(::rust::Slice<::std::uint8_t const> spirv_root, ::rust::Str entry_point, ::rust::Slice<::tessera::bridge::SpecConstant const> specialization, ::rust::Slice<::std::uint8_t const> push_constants, ::std::array<::std::uint32_t, 3> grid, ::rust::Slice<::tessera::bridge::BufferSpec const> buffers);

// The result hash.
::std::array<::std::uint8_t, 32> result_hash(::rust::Slice<::std::uint8_t const> kernel_hash, ::rust::Slice<::std::uint8_t const> input_root, ::rust::Slice<::std::uint8_t const> output_root, ::std::uint64_t output_len);

// The result seal.
::std::array<::std::uint8_t, 32> result_seal(::rust::Slice<::std::uint8_t const> public_key, ::std::uint64_t job, ::rust::Slice<::std::uint8_t const> result_hash);

// The Merkle root of bytes cut into chunks.
::std::array<::std::uint8_t, 32> merkle_root(::rust::Slice<::std::uint8_t const> data) noexcept;

// A new device key as a PKCS#8 document.
::rust::Vec<::std::uint8_t> generate_key();

// The public key of a PKCS#8 document.
::std::array<::std::uint8_t, 32> key_public(::rust::Slice<::std::uint8_t const> pkcs8);

// The public key of a 32-byte seed.
::std::array<::std::uint8_t, 32> seed_public_key(::rust::Slice<::std::uint8_t const> seed);

// The id of a 32-byte public key.
::std::array<::std::uint8_t, 16> key_id_of(::rust::Slice<::std::uint8_t const> public_key);
} // namespace bridge
} // namespace tessera

#ifdef __clang__
#pragma clang diagnostic pop
#endif // __clang__
