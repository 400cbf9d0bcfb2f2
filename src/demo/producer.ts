/**
 * Demo feed: synthetic but realistic 1-minute bars for a few hundred symbols (random-walk prices,
 * minute-aligned, keyed by symbol), produced to KAFKA_TOPIC as an aggregator of *finalized* bars does:
 * the bar of minute M is published only once minute M has closed (at M + 1 min or later), never while
 * it is still forming. It back-fills DEMO_HISTORY_MINUTES of closed minutes quickly, then publishes each
 * minute's bars right after it closes. Creates the topic (DEMO_PARTITIONS) if it is missing.
 *
 *   DEMO_SYMBOLS (300)  DEMO_HISTORY_MINUTES (120)  DEMO_PARTITIONS (6)  DEMO_MAX_MINUTES (0 = run until stopped)
 */
import { CompressionTypes, Kafka, logLevel } from 'kafkajs';
import { registerCodecs } from '../consumer/codecs';
import { mulberry32 } from './random';

const env = process.env;
const brokers = (env.KAFKA_BROKERS ?? 'localhost:9092').split(',');
const topic = env.KAFKA_TOPIC ?? 'bars.1m';
const symbolsCount = Number(env.DEMO_SYMBOLS ?? 300);
const historyMinutes = Number(env.DEMO_HISTORY_MINUTES ?? 120);
const partitions = Number(env.DEMO_PARTITIONS ?? 6);
const maxMinutes = Number(env.DEMO_MAX_MINUTES ?? 0);

/** Deterministic pseudo-random numbers, so a demo run is reproducible. */
const rng = mulberry32;

export function demoSymbols(n: number): string[] {
  const out: string[] = [];
  const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  for (let i = 0; out.length < n; i++) {
    let s = '';
    let k = i;
    do {
      s = letters[k % 26] + s;
      k = Math.floor(k / 26) - 1;
    } while (k >= 0);
    if (s.length >= 2) out.push(s);
  }
  return out;
}

const round = (x: number) => Math.round(x * 10_000) / 10_000;

/** A bar is final, and may be published, once its minute has ended. */
export function isClosed(minuteStartMs: number, nowMs: number): boolean {
  return nowMs >= minuteStartMs + 60_000;
}

export function nextBar(symbol: string, timestampMs: number, last: number, random: () => number) {
  const steps = 6;
  const open = last;
  let price = open;
  let high = open;
  let low = open;
  let notional = 0;
  let volume = 0;
  for (let i = 0; i < steps; i++) {
    price = Math.max(0.01, price * (1 + (random() - 0.5) * 0.004));
    const v = 1 + Math.floor(random() * 500);
    high = Math.max(high, price);
    low = Math.min(low, price);
    notional += price * v;
    volume += v;
  }
  const bar = {
    symbol,
    timestamp: new Date(timestampMs).toISOString(),
    open: round(open),
    high: round(high),
    low: round(low),
    close: round(price),
    volume,
    vwap: round(notional / volume),
  };
  // Rounding can move vwap a hair outside [low, high]; clamp to keep the bar valid.
  bar.vwap = Math.min(bar.high, Math.max(bar.low, bar.vwap));
  bar.high = Math.max(bar.high, bar.open, bar.close);
  bar.low = Math.min(bar.low, bar.open, bar.close);
  return { bar, close: price };
}

async function main(): Promise<void> {
  registerCodecs();
  const kafka = new Kafka({ clientId: 'bar-writer-demo', brokers, logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  if (!(await admin.listTopics()).includes(topic)) {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
    console.log(`demo: created topic ${topic} with ${partitions} partitions`);
  }
  await admin.disconnect();

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  const symbols = demoSymbols(symbolsCount);
  const random = rng(42);
  const last = new Map(symbols.map((s) => [s, 10 + random() * 490]));
  // The newest closed minute is the one before the current one.
  let minute = Math.floor(Date.now() / 60_000) * 60_000 - historyMinutes * 60_000;
  let produced = 0;
  let minutes = 0;
  console.log(
    `demo: producing ${symbols.length} symbols to ${topic} on ${brokers.join(',')}, from ${new Date(minute).toISOString()}`,
  );
  while (!stopping && (maxMinutes === 0 || minutes < maxMinutes)) {
    if (!isClosed(minute, Date.now())) {
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    const messages = symbols.map((symbol) => {
      const { bar, close } = nextBar(symbol, minute, last.get(symbol)!, random);
      last.set(symbol, close);
      return { key: symbol, value: JSON.stringify(bar) };
    });
    await producer.send({ topic, messages, compression: CompressionTypes.GZIP, acks: -1 });
    produced += messages.length;
    minutes++;
    const catchingUp = isClosed(minute + 60_000, Date.now());
    if (!catchingUp || minutes % 20 === 0) {
      console.log(`demo: minute ${new Date(minute).toISOString()} sent (${produced} bars in total)`);
    }
    minute += 60_000;
  }
  await producer.disconnect();
  console.log(`demo: stopped after ${produced} bars`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error('demo:', err);
    process.exit(1);
  });
}
