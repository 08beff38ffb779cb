// Splits a reply into prose and fenced code blocks, so each code block gets its own monospace view
// and copy button, and a streaming reply only re-renders its last segment.
#pragma once

#include <QList>
#include <QString>

struct MarkdownSegment {
  bool code = false;
  QString text;      // prose: Markdown source; code: the block's contents without the fences
  QString language;  // code: the fence's info string ("cpp"), may be empty
  bool closed = true;  // code: false while the closing fence has not arrived yet (streaming)

  bool operator==(const MarkdownSegment& o) const {
    return code == o.code && text == o.text && language == o.language && closed == o.closed;
  }
  bool operator!=(const MarkdownSegment& o) const { return !(*this == o); }
};

// CommonMark-style fences: a line of >= 3 backticks or tildes, indented at most 3 spaces, opens a
// block; a line of the same character, at least as long, with nothing after it closes it. An
// unclosed block runs to the end of the text (a reply still streaming). Prose segments keep their
// text verbatim except the blank lines next to a fence; empty prose segments are dropped.
QList<MarkdownSegment> splitMarkdownSegments(const QString& text);
