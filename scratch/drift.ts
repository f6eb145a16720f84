import { Effect } from "effect"
import * as Shared from "../src/SharedRateLimiter.ts"
import { sqlOn, withDatabase } from "../bench/support.ts"

const dbg: any[] = []; (globalThis as any).__dbg = dbg
const RPS = Number(process.env.RPS ?? 10)
const N = Number(process.env.N ?? 200)
await withDatabase("drift", (url) => sqlOn(url, (sql) => Effect.gen(function*() {
  const limiter = Shared.make(sql, { rps: RPS })
  const times: number[] = []
  for (let i = 0; i < N; i++) {
    yield* limiter.take
    times.push(performance.now())
    // like a provider call: 20 ms busy-wait-free sleep
    yield* Effect.sleep("20 millis")
  }
  const interval = 1000 / RPS * 1.03
  const spans = times.slice(1).map((t, i) => t - times[i]!)
  const total = times[times.length - 1]! - times[0]!
  console.log(`interval ${interval.toFixed(1)} ms; mean span ${(total / (N - 1)).toFixed(2)} ms (drift ${(total / (N - 1) - interval).toFixed(2)} ms/call); min ${Math.min(...spans).toFixed(1)} max ${Math.max(...spans).toFixed(1)}`)
  const q = (k: string) => { const v = dbg.map((d) => d[k]).sort((a: number, b: number) => a - b); return [0.1, 0.5, 0.9, 0.99].map((p) => v[Math.floor(p * v.length)].toFixed(2)).join("/") }
  console.log("rtt", q("rtt"), "wait", q("wait"), "lateness", q("lateness"), "fromRecv", q("fromRecv"))
})))
