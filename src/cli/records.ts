/**
 * The records of a backfill file, read as it streams in: CSV records (RFC 4180: fields separated by
 * commas, a field in double quotes may hold commas, line breaks and quotes written as ""), or lines
 * (JSON lines: a record per line, commas and quotes nothing special). A record ends at a line feed
 * outside quotes; a carriage return right before it is dropped (CRLF files); the last record may lack
 * its line end.
 *
 * Linear: one pass, one character at a time, keeping its place (its state, the record begun, the
 * current field) between chunks; nothing read is scanned again, however long a record runs or however
 * the stream is cut. Bounded: a record longer than `maxChars` is refused (record_too_long, with the
 * line it starts on) and, from the moment it is known to be too long, nothing more of it is kept; the
 * reader still follows its quotes to find where it ends.
 *
 * What is not CSV is refused as invalid_csv, with the line it starts on: a character other than a
 * comma or a line end after a closing quote (the rest of that line is skipped with it), or a quote
 * still open at the end of the input (RFC 4180 lets a quoted field run over line ends, so a stray quote
 * takes everything after it up to the end of the input, or up to `maxChars`).
 */
import type { Readable } from 'node:stream';

export type RecordFormat = 'csv' | 'lines';

export interface Refusal {
  reason: 'invalid_csv' | 'record_too_long';
  detail: string;
}

export interface FileRecord {
  /** The line (1-based) the record starts on. */
  line: number;
  /**
   * The record as written, without its line end; of a record refused as too long, its start (at most
   * TEXT_KEPT characters, and no further than it had been read when it passed the limit) and "…".
   */
  text: string;
  /** Its fields (lines: one, the line); null when refused. */
  fields: string[] | null;
  refusal: Refusal | null;
}

/** The longest record read: 1 MiB (characters). */
export const MAX_RECORD_CHARS = 1 << 20;
/** Of a record too long, the characters kept to show it. */
export const TEXT_KEPT = 1024;

const LF = 10;
const CR = 13;
const QUOTE = 34;
const COMMA = 44;
const BOM = 0xfeff;

const withoutCr = (s: string) => (s.charCodeAt(s.length - 1) === CR ? s.slice(0, -1) : s);

const enum State {
  /** At the start of a field. */
  FieldStart,
  /** In a field without quotes. */
  Unquoted,
  /** In a quoted field. */
  Quoted,
  /** In a quoted field, right after a quote: its end, or the first of "". */
  QuoteSeen,
  /** After a closing quote and a carriage return: a line feed must follow. */
  QuoteCr,
  /** Not CSV: the rest of the line is skipped. */
  Bad,
}

export class RecordReader {
  private readonly csv: boolean;
  private state = State.FieldStart;
  /** Characters given to push() so far: each is looked at once. */
  scanned = 0;
  /** The line of the next character. */
  private line = 1;
  private started = false;

  // The record in progress.
  private inRecord = false;
  private recordLine = 0;
  /** Its text from earlier chunks (of one too long: the part kept to show it). */
  private recordText = '';
  /** Its length from earlier chunks. */
  private recordChars = 0;
  private fields: string[] = [];
  /** The current field's value from earlier chunks and runs. */
  private field = '';
  private tooLong = false;
  /** Why it is not CSV; null: it is, so far. */
  private bad: string | null = null;

  constructor(
    format: RecordFormat,
    private readonly maxChars = MAX_RECORD_CHARS,
  ) {
    this.csv = format === 'csv';
  }

  /** Characters held for the record in progress (its text and its fields, each at most maxChars). */
  get retained(): number {
    return this.recordText.length + this.field.length + this.fields.reduce((n, f) => n + f.length, 0);
  }

  /** Reads `chunk`, the next part of the input; the records it completes. */
  push(chunk: string): FileRecord[] {
    const out: FileRecord[] = [];
    const n = chunk.length;
    let i = 0;
    if (!this.started && n > 0) {
      this.started = true;
      if (this.csv && chunk.charCodeAt(0) === BOM) i = 1;
    }
    this.scanned += n - i;
    /** Where the record's text in this chunk starts. */
    let recordStart = i;
    /** Where the current run of the field's value in this chunk starts (-1: none). */
    let run = this.state === State.Unquoted || this.state === State.Quoted ? i : -1;
    /** The current field ends at `end`; `lineEnd`: unquoted, at the record's end (CRLF's CR is not its). */
    const endField = (end: number, lineEnd = false) => {
      if (!this.tooLong) {
        const value = run >= 0 ? this.field + chunk.slice(run, end) : this.field;
        this.fields.push(lineEnd ? withoutCr(value) : value);
        this.checkLength(chunk, recordStart, end);
      }
      this.field = '';
      run = -1;
    };
    const endRecord = (end: number) => {
      out.push(this.finish(chunk, recordStart, end));
      this.line++;
    };
    for (; i < n; i++) {
      const c = chunk.charCodeAt(i);
      if (!this.inRecord) {
        this.inRecord = true;
        this.recordLine = this.line;
        recordStart = i;
      }
      switch (this.state) {
        case State.FieldStart:
        case State.Unquoted:
          if (c === LF) {
            endField(i, true);
            endRecord(i);
          } else if (this.csv && c === COMMA) {
            endField(i);
            this.state = State.FieldStart;
          } else if (this.state === State.FieldStart) {
            if (this.csv && c === QUOTE) {
              this.state = State.Quoted;
              run = i + 1;
            } else {
              this.state = State.Unquoted;
              run = i;
            }
          }
          break;
        case State.Quoted:
          if (c === QUOTE) {
            if (!this.tooLong) this.field += chunk.slice(run, i);
            run = -1;
            this.state = State.QuoteSeen;
          } else if (c === LF) {
            this.line++;
          }
          break;
        case State.QuoteSeen:
          if (c === QUOTE) {
            // "" inside quotes: a quote of the value, and the run goes on from it.
            run = i;
            this.state = State.Quoted;
            this.checkLength(chunk, recordStart, i);
          } else if (c === COMMA) {
            endField(i);
            this.state = State.FieldStart;
          } else if (c === LF) {
            endField(i);
            endRecord(i);
          } else if (c === CR) {
            this.state = State.QuoteCr;
          } else {
            this.refuse('a character follows a closing quote');
          }
          break;
        case State.QuoteCr:
          if (c === LF) {
            endField(i);
            endRecord(i);
          } else {
            this.refuse('a character follows a closing quote');
          }
          break;
        case State.Bad:
          if (c === LF) endRecord(i);
          break;
      }
    }
    if (this.inRecord) {
      // Carried to the next chunk: what this one holds of the record and of its current field.
      if (!this.tooLong) {
        if (run >= 0) this.field += chunk.slice(run, n);
        this.recordText += chunk.slice(recordStart, n);
      }
      this.recordChars += n - recordStart;
      this.checkLength(chunk, n, n);
    }
    return out;
  }

  /** The end of the input: the last record, when it lacks a line end. */
  end(): FileRecord[] {
    if (!this.inRecord) return [];
    const open = this.state === State.Quoted;
    if (open) this.refuse('a quote is not closed');
    else if (this.state !== State.Bad && !this.tooLong)
      this.fields.push(this.state === State.Unquoted ? withoutCr(this.field) : this.field);
    const record = this.finish('', 0, 0);
    // The open quote took the input's last line end into the record; it is not part of what it shows.
    if (open && record.refusal?.reason === 'invalid_csv') record.text = record.text.replace(/\r?\n$/, '');
    return [record];
  }

  /** Not CSV: the record is refused, and the rest of its line skipped. */
  private refuse(detail: string): void {
    this.bad ??= `not a CSV record: ${detail}`;
    this.state = State.Bad;
  }

  /**
   * Whether the record has grown past maxChars (what earlier chunks held, and this one from `start` to
   * `end`): from then on, nothing more of it is kept but the start that shows it.
   */
  private checkLength(chunk: string, start: number, end: number): void {
    if (this.tooLong || this.recordChars + (end - start) <= this.maxChars) return;
    this.tooLong = true;
    this.recordText = (this.recordText + chunk.slice(start, end)).slice(0, TEXT_KEPT);
    this.fields = [];
    this.field = '';
  }

  /**
   * The record ending at `end` of `chunk` (where its text in that chunk starts at `start`), outside
   * quotes; the reader is then ready for the next one.
   */
  private finish(chunk: string, start: number, end: number): FileRecord {
    // Of a record known to be too long, recordText is already all that is kept of it.
    let text = this.tooLong ? this.recordText : this.recordText + chunk.slice(start, end);
    let fields: string[] | null = this.fields;
    let refusal: Refusal | null = null;
    if (this.tooLong || this.recordChars + (end - start) > this.maxChars) {
      text = text.slice(0, TEXT_KEPT) + '…';
      refusal = {
        reason: 'record_too_long',
        detail: `the record starting at line ${this.recordLine} is longer than ${this.maxChars} characters`,
      };
    } else if (this.bad !== null) {
      refusal = { reason: 'invalid_csv', detail: this.bad };
    }
    if (refusal !== null) fields = null;
    // CRLF: the carriage return is not part of the record.
    if (refusal?.reason !== 'record_too_long') text = withoutCr(text);
    this.inRecord = false;
    this.recordText = '';
    this.recordChars = 0;
    this.fields = [];
    this.field = '';
    this.tooLong = false;
    this.bad = null;
    this.state = State.FieldStart;
    return { line: this.recordLine, text, fields, refusal };
  }
}

/** The records of a stream of UTF-8 bytes, pulled chunk by chunk (nothing more is read while the caller awaits). */
export async function* readRecords(
  input: Readable,
  format: RecordFormat,
  maxChars = MAX_RECORD_CHARS,
): AsyncGenerator<FileRecord> {
  const decoder = new TextDecoder('utf-8');
  const reader = new RecordReader(format, maxChars);
  for await (const chunk of input as AsyncIterable<Buffer>) {
    yield* reader.push(decoder.decode(chunk, { stream: true }));
  }
  yield* reader.push(decoder.decode());
  yield* reader.end();
}
