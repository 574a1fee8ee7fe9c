import { cronJobs } from "convex/server";
import { internal } from "./_generated/api";

const crons = cronJobs();
// Replies left `streaming` by a crashed bot process: no delta for two minutes means it is gone.
crons.interval("sweep stale streaming replies", { minutes: 1 }, internal.threads.sweepStale, { olderThanS: 120 });
export default crons;
