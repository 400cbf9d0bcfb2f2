/**
 * Compression codecs beyond kafkajs's built-in gzip: snappy (kafkajs-snappy, pure JS), lz4 (lz4-napi,
 * Kafka's LZ4 frame format) and zstd (zstd-napi). Without them kafkajs crashes, without restarting, on
 * the first batch a producer compressed with one of them. Every process that consumes or produces
 * (the service, its dead-letter producer, the demo producer, the tests) calls registerCodecs() first.
 */
import { errorMessage } from '../observe/logger';
import { CompressionCodecs, CompressionTypes } from 'kafkajs';

interface Encoder {
  buffer: Buffer;
}

export interface CodecStatus {
  codec: 'snappy' | 'lz4' | 'zstd';
  ok: boolean;
  error?: string;
}

let status: CodecStatus[] | null = null;

function load(codec: CodecStatus['codec'], register: () => void): CodecStatus {
  try {
    register();
    return { codec, ok: true };
  } catch (err) {
    return { codec, ok: false, error: errorMessage(err) };
  }
}

/** Registers the codecs (once) and returns which loaded; a failed one is reported, not thrown. */
export function registerCodecs(): CodecStatus[] {
  if (status) return status;
  status = [
    load('snappy', () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const SnappyCodec = require('kafkajs-snappy') as () => unknown;
      CompressionCodecs[CompressionTypes.Snappy] =
        SnappyCodec as (typeof CompressionCodecs)[CompressionTypes.Snappy];
    }),
    load('lz4', () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const lz4 = require('lz4-napi') as {
        compressFrame(b: Buffer): Promise<Buffer>;
        decompressFrame(b: Buffer): Promise<Buffer>;
      };
      lz4.compressFrame(Buffer.from('probe')).catch(() => undefined);
      CompressionCodecs[CompressionTypes.LZ4] = () => ({
        compress: (encoder: Encoder) => lz4.compressFrame(encoder.buffer),
        decompress: (buffer: Buffer) => lz4.decompressFrame(buffer),
      });
    }),
    load('zstd', () => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const zstd = require('zstd-napi') as { compress(b: Buffer): Buffer; decompress(b: Buffer): Buffer };
      zstd.decompress(zstd.compress(Buffer.from('probe')));
      CompressionCodecs[CompressionTypes.ZSTD] = () => ({
        compress: async (encoder: Encoder) => zstd.compress(encoder.buffer),
        decompress: async (buffer: Buffer) => zstd.decompress(buffer),
      });
    }),
  ];
  return status;
}
