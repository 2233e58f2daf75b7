/**
 * A client held by another instance, as the gateway sees it: a `Pipe`
 * whose requests go over the link to that instance, naming the client as
 * `args[0]` for the instance's forwarding router. The link breaking (the
 * instance killed, NATS lost, a bad frame, the instance going away) fails a
 * request with `InstanceGoneError` naming the instance; the link's own
 * answers (a deadline, the in-flight cap, this instance shutting down) stay
 * what they are.
 */
import {
  InstanceGoneError,
  PipeBrokenError,
  ProtocolError,
  ShuttingDownError,
  type InFlight,
  type MessageExchange,
  type OutgoingNotification,
  type OutgoingRequest,
  type PeerInfo,
  type Pipe,
  type ReplyResult,
} from '@restpipe/shared';

export class RemotePipe implements Pipe {
  readonly peer: PeerInfo;

  /**
   * @param link the ready link exchange to `instance` (`LinkTable.pipeTo`)
   * @param clientName the client, as its instance knows it
   * @param address the client's address, as the directory has it
   */
  constructor(
    readonly link: MessageExchange,
    readonly clientName: string,
    readonly instance: string,
    address: string | undefined,
  ) {
    this.peer = { name: clientName, address };
  }

  get ready(): boolean {
    return this.link.ready;
  }

  /** The link's: every client reached over it shares these. */
  get inFlight(): InFlight {
    return this.link.inFlight;
  }

  request(req: OutgoingRequest): Promise<ReplyResult> {
    return this.link.request({ ...req, args: [this.clientName, ...req.args] }).catch((err: unknown) => {
      throw this.failure(err);
    });
  }

  notify(event: OutgoingNotification): Promise<void> {
    return this.link.notify({ ...event, args: [this.clientName, ...event.args] }).catch((err: unknown) => {
      throw this.failure(err);
    });
  }

  /** A broken link is the instance gone; anything else is the request's own answer. */
  private failure(err: unknown): unknown {
    if (err instanceof InstanceGoneError) return err;
    const peerLeaving = err instanceof ShuttingDownError && this.link.state === 'peer-leaving';
    if (err instanceof PipeBrokenError || err instanceof ProtocolError || peerLeaving) {
      const why = peerLeaving ? 'it is shutting down' : (err as Error).message;
      return new InstanceGoneError(`instance "${this.instance}" holding client "${this.clientName}" went away: ${why}`, { cause: err });
    }
    return err;
  }
}
