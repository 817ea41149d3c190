#!/usr/bin/env python3
"""Function length over server/*.c, against issue 12's targets.

The code is written in style(9) form: the return type on its own line, the
name at column 0, the body's braces alone at column 0.  A function is a '{'
alone at column 0 whose preceding lines (back to a blank line, a comment, a
preprocessor line or the end of the previous declaration) form a signature
with a parameter list and no '='.  Its length is the number of lines between
its braces; the closing brace is found by counting braces outside comments,
strings and character literals, so a '}' at column 0 inside a string or a
comment does not end it early.

Usage: funclen.py [DIR]   (DIR defaults to ../../server from this file)
Exit status 1 when any function is over MAX_LINES, the median over
MEDIAN_MAX or the 90th percentile over P90_MAX.
"""

import glob
import os
import re
import statistics
import sys

MAX_LINES = 80
MEDIAN_MAX = 15
P90_MAX = 40
SHOW = 10

NAME_RE = re.compile(r'^\**([A-Za-z_][A-Za-z0-9_]*)\s*\(')
ANY_NAME_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*\(')


def strip_code(text):
    """Replace comments, strings and char literals by spaces, keeping
    newlines, so that brace counting sees only code."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c and text[j] != '\n':
                j += 2 if text[j] == '\\' else 1
            j = min(j + 1, n)
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def signature(raw, i):
    """The lines before line i that make up a declaration, or []."""
    sig = []
    j = i - 1
    while j >= 0 and len(sig) < 12:
        line = raw[j]
        s = line.strip()
        if (not s or s.startswith('#') or s.endswith(('*/', ';', '}'))
                or line.startswith('}')):
            break
        sig.insert(0, line)
        j -= 1
    return sig


def function_name(sig):
    """The function's name, or None when sig is not a function's."""
    text = ' '.join(sig)
    if '(' not in text or '=' in text.split('(')[0]:
        return None
    for line in sig:
        m = NAME_RE.match(line)
        if m:
            return m.group(1)
    # Tolerate "static int name(...)" on one line.
    m = ANY_NAME_RE.search(text)
    return m.group(1) if m else None


def body_end(code, i):
    """Index of the line holding the '}' that closes the '{' on line i."""
    depth = 0
    for k in range(i, len(code)):
        for ch in code[k]:
            if ch == '{':
                depth += 1
            elif ch == '}':
                depth -= 1
                if depth == 0:
                    return k
    return None


def functions(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        text = f.read()
    raw = text.split('\n')
    code = strip_code(text).split('\n')
    found, problems = [], []
    i = 0
    while i < len(raw):
        if raw[i].rstrip() != '{':
            i += 1
            continue
        name = function_name(signature(raw, i))
        end = body_end(code, i)
        if end is None:
            problems.append('%s:%d: unbalanced braces' % (path, i + 1))
            break
        if name:
            found.append((end - i - 1, os.path.basename(path), name, i + 1))
        i = end + 1
    return found, problems


def p90(sorted_lengths):
    return sorted_lengths[min(int(len(sorted_lengths) * 0.9),
                              len(sorted_lengths) - 1)]


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    top = argv[1] if len(argv) > 1 else os.path.join(here, '..', '..',
                                                     'server')
    files = sorted(glob.glob(os.path.join(top, '*.c')))
    if not files:
        print('funclen: no .c files in %s' % top)
        return 1
    res, problems = [], []
    for path in files:
        found, bad = functions(path)
        res += found
        problems += bad
    for p in problems:
        print(p)
    if not res:
        print('funclen: no functions found in %s' % top)
        return 1
    res.sort(key=lambda r: (r[0], r[1], r[2]))
    n = [r[0] for r in res]
    med, p = statistics.median(n), p90(n)
    print('functions %d  median %g  p90 %d  max %d' % (len(n), med, p, n[-1]))
    print('longest %d:' % min(SHOW, len(res)))
    for length, f, name, line in reversed(res[-SHOW:]):
        print('  %4d  %s:%d %s' % (length, f, line, name))
    fail = list(problems)
    over = [r for r in res if r[0] > MAX_LINES]
    for length, f, name, line in reversed(over):
        fail.append('%s:%d %s is %d lines (max %d)'
                    % (f, line, name, length, MAX_LINES))
    if med > MEDIAN_MAX:
        fail.append('median %g is over %d' % (med, MEDIAN_MAX))
    if p > P90_MAX:
        fail.append('p90 %d is over %d' % (p, P90_MAX))
    for msg in fail:
        print('FAIL: ' + msg)
    return 1 if fail else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
