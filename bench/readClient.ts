/**
 * bench:reads' second client, in a process of its own (as a scanner is): reads `url` `n` times, one
 * after the other (after one read not counted), and prints `{"ms":[…],"rows":N}`: each read's time
 * from the request to the answer parsed, and the length of the answer's `key` array.
 *
 *   node --import tsx bench/readClient.ts URL N KEY
 */
async function main(): Promise<void> {
  const [url, n, key] = process.argv.slice(2);
  if (!url || !n || !key) throw new Error('usage: readClient.ts URL N KEY');
  const read = async (): Promise<number> => {
    const res = await fetch(url);
    if (res.status !== 200) throw new Error(`${url}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as Record<string, unknown[]>)[key]!.length;
  };
  await read();
  const ms: number[] = [];
  let rows = 0;
  for (let i = 0; i < Number(n); i++) {
    const t0 = performance.now();
    rows = await read();
    ms.push(performance.now() - t0);
  }
  console.log(JSON.stringify({ ms, rows }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
