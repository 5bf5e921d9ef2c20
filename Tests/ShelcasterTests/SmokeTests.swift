import Testing
@testable import AudioCore

@Test func dbfsOfFullScaleIsZero() {
    #expect(abs(dbfs(1.0)) < 1e-9)
    #expect(dbfs(0) == -120)
}
