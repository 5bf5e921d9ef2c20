import ControlPlane
import HealthServer
import Routing
import ShowControl
import Synchronization

/// The control the live mix sees in `run`: the DynamoDB control plane, plus what only the daemon
/// knows — the health endpoints, the show going LIVE once the ingest accepts it, and SIGTERM.
final class WorkerControl: ShowControl {
    let dynamo: DynamoShowControl
    let health: HealthState
    private let wentLive = Atomic<Bool>(false)
    private let shutdown = Mutex<String?>(nil)

    init(dynamo: DynamoShowControl, health: HealthState) {
        self.dynamo = dynamo
        self.health = health
    }

    func takeRoutingUpdate() -> Routing? { dynamo.takeRoutingUpdate() }
    func role(participantId: String) -> ParticipantRole? { dynamo.role(participantId: participantId) }

    func publish(_ status: ShowStatus) {
        health.mixAdvanced()
        health.publish(status)
        let connected = status.outputState == .connected
        health.setOutputConnected(connected)
        health.setStageJoined(status.stageConnected)
        health.setMetric("output_reconnects", Double(status.outputReconnects))
        // DATA-MODEL.md: the show is LIVE when the ingest accepted the stream, once.
        if connected && !wentLive.exchange(true, ordering: .acquiringAndReleasing) { dynamo.markLive() }
        dynamo.publish(status)
    }

    var stopReason: String? { shutdown.withLock { $0 } ?? dynamo.stopReason }

    /// SIGTERM/SIGINT: the mix loop ends at its next block, unsubscribes and flushes.
    func requestStop(_ reason: String) {
        shutdown.withLock { if $0 == nil { $0 = reason } }
        dynamo.beginStopping()
    }
}
