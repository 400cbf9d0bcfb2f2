/*
 * Test helper for test/integration/interop.test.ts: produces records with the Apache Kafka Java client
 * (org.apache.kafka.clients.producer.KafkaProducer), so the service is tested against batches written the
 * way most real producers write them (Java's compression codecs, batching, record headers).
 *
 * Compiled and run by the test against the broker's own jars (.kafka/<version>/libs):
 *
 *   javac -cp "<libs>/*" -d <tmp> BarProducer.java
 *   java -cp "<tmp>:<libs>/*" BarProducer --bootstrap 127.0.0.1:9092 --topic T --compression zstd \
 *        [--batch-size 16384] [--linger-ms 20] [--input records.jsonl]
 *
 * Input (a file, or stdin when --input is absent): one JSON object per line,
 *   {"key": "AAPL" | null, "value": "<string>" | null, "headers": {"name": "value", ...}, "partition": 3}
 * ("headers" and "partition" optional). Keys, values and header values are sent as UTF-8 bytes.
 *
 * Producer settings: acks=all, idempotence on, compression.type as given, linger.ms and batch.size as
 * given (so records are batched). Flushes, prints one JSON summary line on stdout
 *   {"sent":N,"failed":0,"compressionRateAvg":0.21,"batchSizeAvg":15873.2,"recordsPerRequestAvg":95.1}
 * and exits 0 when every record was acknowledged, 1 when some failed, 2 on bad arguments or input.
 */

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class BarProducer {
  private static final Set<String> CODECS = Set.of("none", "gzip", "snappy", "lz4", "zstd");

  private BarProducer() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> opts = new HashMap<>();
    for (int i = 0; i < args.length; i += 2) {
      if (!args[i].startsWith("--") || i + 1 >= args.length) usage("bad argument: " + args[i]);
      opts.put(args[i].substring(2), args[i + 1]);
    }
    String bootstrap = required(opts, "bootstrap");
    String topic = required(opts, "topic");
    String compression = required(opts, "compression");
    if (!CODECS.contains(compression)) usage("--compression must be one of " + CODECS);
    int batchSize = Integer.parseInt(opts.getOrDefault("batch-size", "16384"));
    int lingerMs = Integer.parseInt(opts.getOrDefault("linger-ms", "20"));

    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ProducerConfig.CLIENT_ID_CONFIG, "bar-producer-java-" + compression);
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
    props.put(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(batchSize));
    props.put(ProducerConfig.LINGER_MS_CONFIG, Integer.toString(lingerMs));
    props.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(Math.max(1048576, batchSize)));
    props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

    ObjectMapper json = new ObjectMapper();
    List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
    String input = opts.get("input");
    try (BufferedReader reader =
        input != null
            ? Files.newBufferedReader(Paths.get(input), StandardCharsets.UTF_8)
            : new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      String line;
      int lineNo = 0;
      while ((line = reader.readLine()) != null) {
        lineNo++;
        if (line.isBlank()) continue;
        try {
          records.add(toRecord(topic, json.readTree(line)));
        } catch (RuntimeException | java.io.IOException e) {
          usage("input line " + lineNo + ": " + e.getMessage());
        }
      }
    }

    AtomicLong acked = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    AtomicReference<Exception> firstError = new AtomicReference<>();
    Map<String, Object> summary = new HashMap<>();
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
      for (ProducerRecord<byte[], byte[]> record : records) {
        producer.send(
            record,
            (metadata, error) -> {
              if (error == null) acked.incrementAndGet();
              else {
                failed.incrementAndGet();
                firstError.compareAndSet(null, error);
              }
            });
      }
      producer.flush();
      for (Map.Entry<MetricName, ? extends Metric> m : producer.metrics().entrySet()) {
        MetricName name = m.getKey();
        if (!name.group().equals("producer-metrics")) continue;
        switch (name.name()) {
          case "compression-rate-avg" -> summary.put("compressionRateAvg", m.getValue().metricValue());
          case "batch-size-avg" -> summary.put("batchSizeAvg", m.getValue().metricValue());
          case "records-per-request-avg" -> summary.put("recordsPerRequestAvg", m.getValue().metricValue());
          default -> {}
        }
      }
    }
    summary.put("sent", acked.get());
    summary.put("failed", failed.get());
    if (firstError.get() != null) summary.put("error", firstError.get().toString());
    System.out.println(json.writeValueAsString(summary));
    System.exit(failed.get() == 0 && acked.get() == records.size() ? 0 : 1);
  }

  private static ProducerRecord<byte[], byte[]> toRecord(String topic, JsonNode node) {
    if (node == null || !node.isObject()) throw new IllegalArgumentException("not a JSON object");
    byte[] key = bytes(node.get("key"), "key");
    byte[] value = bytes(node.get("value"), "value");
    Integer partition = null;
    JsonNode p = node.get("partition");
    if (p != null && !p.isNull()) {
      if (!p.canConvertToInt()) throw new IllegalArgumentException("partition must be an integer");
      partition = p.intValue();
    }
    List<Header> headers = new ArrayList<>();
    JsonNode h = node.get("headers");
    if (h != null && !h.isNull()) {
      if (!h.isObject()) throw new IllegalArgumentException("headers must be an object");
      Iterator<Map.Entry<String, JsonNode>> it = h.properties().iterator();
      while (it.hasNext()) {
        Map.Entry<String, JsonNode> e = it.next();
        headers.add(new RecordHeader(e.getKey(), bytes(e.getValue(), "header " + e.getKey())));
      }
    }
    return new ProducerRecord<>(topic, partition, key, value, headers);
  }

  private static byte[] bytes(JsonNode n, String what) {
    if (n == null || n.isNull()) return null;
    if (!n.isTextual()) throw new IllegalArgumentException(what + " must be a string or null");
    return n.textValue().getBytes(StandardCharsets.UTF_8);
  }

  private static String required(Map<String, String> opts, String name) {
    String v = opts.get(name);
    if (v == null || v.isEmpty()) usage("--" + name + " is required");
    return v;
  }

  private static void usage(String problem) {
    System.err.println("BarProducer: " + problem);
    System.err.println(
        "usage: BarProducer --bootstrap host:port --topic T --compression none|gzip|snappy|lz4|zstd"
            + " [--batch-size bytes] [--linger-ms ms] [--input file.jsonl]");
    System.exit(2);
  }
}
