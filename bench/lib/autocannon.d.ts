// The subset of autocannon's API that bench/lib/load.ts uses (the package ships no types).
declare module 'autocannon' {
  interface Histogram { p50: number; p99: number; average: number; max: number }
  interface Result {
    latency: Histogram;
    requests: Histogram & { total: number; sent: number };
    non2xx: number;
    errors: number;
    timeouts: number;
    statusCodeStats?: Record<string, { count: number }>;
  }
  interface Options {
    url: string;
    connections?: number;
    pipelining?: number;
    duration?: number;
    amount?: number;
    timeout?: number;
    headers?: Record<string, string>;
    excludeErrorStats?: boolean;
    requests?: Array<{ setupRequest?: (req: { headers?: Record<string, string> }) => unknown }>;
  }
  function autocannon(opts: Options): Promise<Result>;
  export default autocannon;
}
