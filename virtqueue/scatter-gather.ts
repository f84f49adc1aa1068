// Helpers over segment lists (the readable / writable views of a descriptor chain).
// Offsets are byte offsets into the concatenation of the segments. All of them clip to
// the space that exists and report how much they did: the caller compares that with
// what it needed (a chain shorter than a header is the caller's error to report,
// D10/D15). A negative or non-integer offset is a bug in the caller, not guest input,
// and throws RangeError: subarray() would silently count it from the end (V10.1).

function checkOffset(what: string, offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`${what}: offset ${offset} is not a non-negative integer`);
  }
}

/** Total bytes in the segment list. */
export function sgLength(segments: readonly Uint8Array[]): number {
  let n = 0;
  for (let i = 0; i < segments.length; i++) n += segments[i].length;
  return n;
}

/** Gather: copy up to dst.length bytes starting at byte `offset` of the segment list into dst; returns bytes copied. */
export function sgRead(segments: readonly Uint8Array[], offset: number, dst: Uint8Array): number {
  checkOffset('sgRead', offset);
  let skip = offset;
  let done = 0;
  const want = dst.length;
  for (let i = 0; i < segments.length && done < want; i++) {
    const seg = segments[i];
    const segLen = seg.length;
    if (skip >= segLen) {
      skip -= segLen;
      continue;
    }
    const n = Math.min(segLen - skip, want - done);
    if (skip === 0 && n === segLen) dst.set(seg, done);
    else dst.set(seg.subarray(skip, skip + n), done);
    done += n;
    skip = 0;
  }
  return done;
}

/** Scatter: copy src into the segment list starting at byte `offset`; returns bytes copied (clipped to the space). */
export function sgWrite(segments: readonly Uint8Array[], offset: number, src: Uint8Array): number {
  checkOffset('sgWrite', offset);
  let skip = offset;
  let done = 0;
  const want = src.length;
  for (let i = 0; i < segments.length && done < want; i++) {
    const seg = segments[i];
    const segLen = seg.length;
    if (skip >= segLen) {
      skip -= segLen;
      continue;
    }
    const n = Math.min(segLen - skip, want - done);
    if (done === 0 && n === want) seg.set(src, skip);
    else seg.set(src.subarray(done, done + n), skip);
    done += n;
    skip = 0;
  }
  return done;
}

/** Push onto out the sub-views covering [offset, offset+len) of segments (clipped). Returns bytes covered. */
export function sgSlice(segments: readonly Uint8Array[], offset: number, len: number, out: Uint8Array[]): number {
  checkOffset('sgSlice', offset);
  checkOffset('sgSlice (len)', len);
  let skip = offset;
  let done = 0;
  for (let i = 0; i < segments.length && done < len; i++) {
    const seg = segments[i];
    const segLen = seg.length;
    if (skip >= segLen) {
      skip -= segLen;
      continue;
    }
    const n = Math.min(segLen - skip, len - done);
    out.push(skip === 0 && n === segLen ? seg : seg.subarray(skip, skip + n));
    done += n;
    skip = 0;
  }
  return done;
}
