import { cronJobs } from "convex/server";
import { internal } from "./_generated/api";

const crons = cronJobs();
// Replies left `streaming` by a crashed bot process: no delta for two minutes means it is gone.
crons.interval("sweep stale streaming replies", { minutes: 1 }, internal.threads.sweepStale, { olderThanS: 120 });
// Event claims and request records older than a day guard no retry any more.
crons.interval("prune old claims and requests", { hours: 1 }, internal.housekeeping.prune, { olderThanS: 86_400, batch: 1000 });
export default crons;
