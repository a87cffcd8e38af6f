// JSON with the exact text of message payloads.
//
// The API returns a JSON payload (`value`) byte for byte as it was
// produced; JSON.parse would lose that text (whitespace, key order of
// duplicates, digits of large numbers). parseJson keeps, for every object
// with a `value` member, the raw text of that member, so the console can
// show the stored bytes and pretty-print them without rounding numbers.

const raws = new WeakMap();

/** The raw JSON text of `obj.value`, when `obj` came from parseJson. */
export function rawValueOf(obj) {
  return obj && typeof obj === 'object' ? raws.get(obj) : undefined;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** Parses like JSON.parse, recording raw `value` texts (see rawValueOf). */
export function parseJson(text) {
  try {
    return parseRecording(text);
  } catch (e) {
    if (e instanceof RangeError) return JSON.parse(text); // nesting too deep for recursion
    throw e;
  }
}

function parseRecording(text) {
  let i = 0;
  const fail = () => {
    throw new SyntaxError(`invalid JSON at position ${i}`);
  };
  const skip = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 32 && c !== 9 && c !== 10 && c !== 13) break;
      i++;
    }
  };
  const string = () => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail();
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const literal = (word, result) => {
    if (!text.startsWith(word, i)) fail();
    i += word.length;
    return result;
  };
  const value = () => {
    skip();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj = {};
      skip();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        skip();
        if (text[i] !== '"') fail();
        const key = string();
        skip();
        if (text[i] !== ':') fail();
        i++;
        skip();
        const start = i;
        const member = value();
        if (key === 'value') raws.set(obj, text.slice(start, i));
        // defineProperty: a `__proto__` key is data, not the prototype.
        Object.defineProperty(obj, key, { value: member, enumerable: true, writable: true, configurable: true });
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] !== '}') fail();
        i++;
        return obj;
      }
    }
    if (c === '[') {
      i++;
      const list = [];
      skip();
      if (text[i] === ']') {
        i++;
        return list;
      }
      for (;;) {
        list.push(value());
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] !== ']') fail();
        i++;
        return list;
      }
    }
    if (c === '"') return string();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail();
    i += m[0].length;
    return Number(m[0]);
  };
  const result = value();
  skip();
  if (i !== text.length) fail();
  return result;
}

/** Re-indents JSON text without re-encoding it (numbers keep their digits). */
export function prettyJson(raw) {
  let out = '';
  let depth = 0;
  let i = 0;
  const newline = () => '\n' + '  '.repeat(depth);
  const isSpace = (c) => c === ' ' || c === '\n' || c === '\t' || c === '\r';
  while (i < raw.length) {
    const c = raw[i];
    if (c === '"') {
      let j = i + 1;
      while (j < raw.length && raw[j] !== '"') j += raw[j] === '\\' ? 2 : 1;
      out += raw.slice(i, j + 1);
      i = j + 1;
    } else if (isSpace(c)) {
      i++;
    } else if (c === '{' || c === '[') {
      let j = i + 1;
      while (j < raw.length && isSpace(raw[j])) j++;
      if (raw[j] === (c === '{' ? '}' : ']')) {
        out += c + raw[j];
        i = j + 1;
      } else {
        depth++;
        out += c + newline();
        i++;
      }
    } else if (c === '}' || c === ']') {
      depth = Math.max(0, depth - 1);
      out += newline() + c;
      i++;
    } else if (c === ',') {
      out += ',' + newline();
      i++;
    } else if (c === ':') {
      out += ': ';
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** UTF-8 bytes of a string. */
export function utf8(text) {
  return new TextEncoder().encode(text);
}

/** Bytes from standard base64, or null when it is not base64. */
export function fromBase64(b64) {
  try {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  } catch {
    return null;
  }
}

/** Standard base64 of bytes. */
export function toBase64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** A hex dump: offset, 16 bytes, printable ASCII. */
export function hexDump(bytes, max = 65536) {
  const lines = [];
  const end = Math.min(bytes.length, max);
  for (let off = 0; off < end; off += 16) {
    const row = bytes.subarray(off, Math.min(off + 16, end));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47, ' ')}  |${ascii}|`);
  }
  if (bytes.length > end) lines.push(`… ${bytes.length - end} more bytes`);
  return lines.join('\n');
}

/** Text of UTF-8 bytes, or null when they are not valid UTF-8. */
export function utf8Text(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}
