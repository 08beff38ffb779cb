#include "markdown_segments.h"

namespace {

struct Fence {
  QChar ch;
  int length = 0;
  QString info;
};

// Returns true when `line` is a fence line; fills `fence`.
bool parseFence(const QString& line, Fence* fence) {
  int i = 0;
  while (i < line.size() && i < 4 && line[i] == QLatin1Char(' ')) ++i;
  if (i > 3 || i >= line.size()) return false;
  const QChar ch = line[i];
  if (ch != QLatin1Char('`') && ch != QLatin1Char('~')) return false;
  int n = 0;
  while (i + n < line.size() && line[i + n] == ch) ++n;
  if (n < 3) return false;
  const QString info = line.mid(i + n).trimmed();
  // A backtick fence's info string may not contain backticks (CommonMark).
  if (ch == QLatin1Char('`') && info.contains(QLatin1Char('`'))) return false;
  fence->ch = ch;
  fence->length = n;
  fence->info = info;
  return true;
}

void appendProse(QList<MarkdownSegment>* out, const QStringList& lines) {
  // Trim blank lines at both ends; the fences already separate the blocks visually.
  int begin = 0, end = static_cast<int>(lines.size());
  while (begin < end && lines[begin].trimmed().isEmpty()) ++begin;
  while (end > begin && lines[end - 1].trimmed().isEmpty()) --end;
  if (begin == end) return;
  MarkdownSegment s;
  s.text = lines.mid(begin, end - begin).join(QLatin1Char('\n'));
  out->append(s);
}

}  // namespace

QList<MarkdownSegment> splitMarkdownSegments(const QString& text) {
  QList<MarkdownSegment> out;
  const QStringList lines = text.split(QLatin1Char('\n'));
  QStringList prose;
  QStringList code;
  Fence open;
  bool inCode = false;
  for (const QString& line : lines) {
    Fence f;
    if (!inCode) {
      if (parseFence(line, &f)) {
        appendProse(&out, prose);
        prose.clear();
        open = f;
        inCode = true;
      } else {
        prose.append(line);
      }
      continue;
    }
    if (parseFence(line, &f) && f.ch == open.ch && f.length >= open.length && f.info.isEmpty()) {
      MarkdownSegment s;
      s.code = true;
      s.text = code.join(QLatin1Char('\n'));
      s.language = open.info.section(QLatin1Char(' '), 0, 0);
      out.append(s);
      code.clear();
      inCode = false;
    } else {
      code.append(line);
    }
  }
  if (inCode) {
    MarkdownSegment s;
    s.code = true;
    s.text = code.join(QLatin1Char('\n'));
    s.language = open.info.section(QLatin1Char(' '), 0, 0);
    s.closed = false;
    out.append(s);
  } else {
    appendProse(&out, prose);
  }
  return out;
}
