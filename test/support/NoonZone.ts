/** Time zones for tests that run on the real clock. */

/** A fixed-offset zone where it is now about noon, so a local-time window (reminders: 09:00-21:00) is open whatever the hour the test runs. */
export const noonZone = (now: number): string => {
  const offset = 12 - new Date(now).getUTCHours()
  const n = offset > 12 ? offset - 24 : offset < -11 ? offset + 24 : offset
  // Etc/GMT's sign is inverted: Etc/GMT-3 is UTC+3.
  return n === 0 ? "Etc/GMT" : `Etc/GMT${n > 0 ? "-" : "+"}${Math.abs(n)}`
}
