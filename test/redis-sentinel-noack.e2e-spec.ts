import { printReport, runFailoverSoak } from './support/failover-soak';

// The same soak without waiting for replicas (REDIS_MIN_REPLICAS_ACK=0). Replication is
// asynchronous: the jobs acknowledged while the replica was behind die with the primary. This is
// the negative control of the REDIS_MIN_REPLICAS_ACK=1 spec (its verifier does see loss), and the
// service still recovers by itself after every kill and completes every job it still knows.
describe('Sentinel failover under load, REDIS_MIN_REPLICAS_ACK=0', () => {
  it('loses the jobs acknowledged while the replica lagged, and recovers after each of 5 primary kills', async () => {
    const report = await runFailoverSoak({ minReplicasAck: 0, kills: 5, replicaLagMs: 700 });
    printReport(report);
    expect(report.acknowledged).toBeGreaterThanOrEqual(50);
    expect(report.lost.length).toBeGreaterThan(0);
    expect(report.succeeded + report.failed + report.lost.length).toBe(report.acknowledged);
    expect(report.unconfirmed).toBe(0);
    expect(report.recoveryMs).toHaveLength(5);
    expect(report.readinessDipped.every(Boolean)).toBe(true);
  }, 110_000);
});
