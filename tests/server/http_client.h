// A small HTTP/1.1 client over a POSIX socket, written for the server tests: it sees the bytes as a
// client does (status line, headers, chunked framing) and can hang up mid-stream. Plus an SSE
// parser for `data: ...\n\n` events.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace qins_test {

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;                            // de-chunked
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

class Connection {
 public:
  explicit Connection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
      throw std::runtime_error("connect to port " + std::to_string(port) + " failed");
    }
  }
  ~Connection() { close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void send_all(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error("send failed");
      off += static_cast<size_t>(n);
    }
  }

  void send_request(const std::string& method, const std::string& path, const std::string& body,
                    const std::vector<std::string>& headers = {}) {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    for (const auto& h : headers) req += h + "\r\n";
    if (!body.empty() || method == "POST") {
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    req += "\r\n" + body;
    send_all(req);
  }

  // Appends what arrives within timeout_ms to `buf`; false on EOF or timeout.
  bool read_some(std::string& buf, int timeout_ms = 60000) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char tmp[8192];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    return true;
  }

  // Reads to EOF (the server closes: Connection: close) and parses the response.
  HttpReply read_reply() {
    std::string raw;
    while (read_some(raw)) {
    }
    return parse(raw);
  }

  static HttpReply parse(const std::string& raw) {
    HttpReply r;
    const size_t end = raw.find("\r\n\r\n");
    if (end == std::string::npos) throw std::runtime_error("no end of headers in: " + raw.substr(0, 200));
    const std::string head = raw.substr(0, end);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.rfind("HTTP/1.1 ", 0) != 0) throw std::runtime_error("bad status line: " + status_line);
    r.status = std::stoi(status_line.substr(9, 3));
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t e = head.find("\r\n", pos);
      if (e == std::string::npos) e = head.size();
      const std::string line = head.substr(pos, e - pos);
      const size_t colon = line.find(':');
      if (colon == std::string::npos) throw std::runtime_error("bad header line: " + line);
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      r.headers[name] = line.substr(v);
      pos = e + 2;
    }
    const std::string rest = raw.substr(end + 4);
    if (r.header("transfer-encoding") == "chunked") {
      r.body = dechunk(rest);
    } else {
      r.body = rest;
      const std::string len = r.header("content-length");
      if (!len.empty() && std::stoul(len) != rest.size()) {
        throw std::runtime_error("body of " + std::to_string(rest.size()) + " bytes, Content-Length " + len);
      }
    }
    return r;
  }

  // Strict: every chunk size line, every chunk's CRLF, and the final 0-size chunk.
  static std::string dechunk(const std::string& s) {
    std::string out;
    size_t pos = 0;
    for (;;) {
      const size_t e = s.find("\r\n", pos);
      if (e == std::string::npos) throw std::runtime_error("truncated chunked body (no final chunk)");
      const size_t n = std::stoul(s.substr(pos, e - pos), nullptr, 16);
      pos = e + 2;
      if (n == 0) return out;
      if (pos + n + 2 > s.size() || s.compare(pos + n, 2, "\r\n") != 0) throw std::runtime_error("bad chunk framing");
      out.append(s, pos, n);
      pos += n + 2;
    }
  }

 private:
  int fd_ = -1;
};

inline HttpReply http_request(int port, const std::string& method, const std::string& path, const std::string& body = "",
                              const std::vector<std::string>& headers = {}) {
  Connection c(port);
  c.send_request(method, path, body, headers);
  return c.read_reply();
}

// Server-sent events as OpenAI streams them: each event is one "data: <payload>" line followed by
// a blank line. Throws on anything else (comments, other fields, a missing blank line).
inline std::vector<std::string> parse_sse(const std::string& body) {
  std::vector<std::string> events;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t e = body.find("\n\n", pos);
    if (e == std::string::npos) throw std::runtime_error("SSE event without its blank line: " + body.substr(pos, 200));
    const std::string ev = body.substr(pos, e - pos);
    if (ev.rfind("data: ", 0) != 0) throw std::runtime_error("SSE event is not 'data: ...': " + ev);
    const std::string payload = ev.substr(6);
    if (payload.find('\n') != std::string::npos) throw std::runtime_error("SSE event spans lines: " + ev);
    events.push_back(payload);
    pos = e + 2;
  }
  return events;
}

}  // namespace qins_test
