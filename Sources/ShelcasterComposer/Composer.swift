import ArgumentParser
import Foundation
import LocalRun
import Logging

@main
struct Composer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shelcaster-composer",
        abstract: "Shelcaster composition worker: mixes a live show into one program stream.",
        subcommands: [LocalCommand.self],
        defaultSubcommand: LocalCommand.self
    )

    /// LOCAL-RUN.md: bad usage is exit 2, including flag values that do not parse (ArgumentParser says 64).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as CommandFailure {
            FileHandle.standardError.write(Data("error: \(failure.message)\n".utf8))
            Foundation.exit(failure.code)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// An error that already carries its exit code and a message fit for the user.
struct CommandFailure: Error {
    let message: String
    let code: Int32
}

enum Logs {
    /// Text lines on stderr, so stdout stays for the run's summary. LOG_LEVEL sets the level.
    static func bootstrap() -> Logger {
        let level = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        return Logger(label: "shelcaster-composer")
    }
}
