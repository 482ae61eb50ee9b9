#include "agent/uplink/signing.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>
#include <cstdio>
#include <mutex>

namespace tagrelay::uplink {
namespace {

// The HMAC implementation is fetched once; contexts are made per call.
EVP_MAC* HmacAlgorithm() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

std::string KeyId(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < 8 && i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xF];
  }
  return out;
}

std::string Sign(std::string_view key, std::string_view topic, std::string_view payload) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  size_t len = 0;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(HmacAlgorithm());
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  const bool ok = ctx != nullptr && EVP_MAC_init(ctx, Bytes(key), key.size(), params) == 1 &&
                  EVP_MAC_update(ctx, Bytes(topic), topic.size()) == 1 &&
                  EVP_MAC_update(ctx, Bytes("\n"), 1) == 1 &&
                  EVP_MAC_update(ctx, Bytes(payload), payload.size()) == 1 &&
                  EVP_MAC_final(ctx, md.data(), &len, md.size()) == 1;
  EVP_MAC_CTX_free(ctx);
  if (!ok) return {};  // cannot happen with a working libcrypto; the receiver rejects it
  std::string out(4 * ((len + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), md.data(),
                                static_cast<int>(len));
  out.resize(static_cast<size_t>(n));
  return out;
}

void Wipe(std::string& secret) {
  if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
  secret.clear();
}

}  // namespace tagrelay::uplink
