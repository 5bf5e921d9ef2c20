import ArgumentParser
import Foundation
import LocalRun
import Logging
import WorkerLogging

@main
struct Composer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shelcaster-composer",
        abstract: "Shelcaster composition worker: mixes a live show into one program stream.",
        subcommands: [LocalCommand.self, JoinCommand.self, RunCommand.self, HealthcheckCommand.self],
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
    /// Text lines on stderr by default, so stdout stays for the run's summary (LOG_FORMAT=json to change).
    static func bootstrap() -> Logger {
        WorkerLogging.bootstrap(defaultFormat: .text)
        return Logger(label: "shelcaster-composer")
    }
}
