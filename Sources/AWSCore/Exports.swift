// AWSCore's API speaks in HTTPClient types (HTTPError, HTTPHeaders, SecretString, Secrets):
// importing AWSCore is enough to use them.
@_exported import HTTPClient
