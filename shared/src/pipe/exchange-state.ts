/**
 * The states of one exchange and the moves between them:
 *
 *   handshaking ──hello──► open ──GoAway received──► peer-leaving
 *        │                  │ drain()/goAway()           │ drain()/goAway()
 *        │                  ▼                            ▼
 *        └─────────────► draining ◄──────────────────────┘
 *   any state ──close()──► closed
 *
 * New requests go out in handshaking and open; the peer's requests are
 * handled in every state but draining (then they answer 246).
 */

export type ExchangeState = 'handshaking' | 'open' | 'peer-leaving' | 'draining' | 'closed';

/** The moves the state machine allows; `nextState` refuses any other. */
const TRANSITIONS: Readonly<Record<ExchangeState, readonly ExchangeState[]>> = {
  handshaking: ['open', 'peer-leaving', 'draining', 'closed'],
  open: ['peer-leaving', 'draining', 'closed'],
  'peer-leaving': ['draining', 'closed'],
  draining: ['closed'],
  closed: [],
};

/** `to`, when the move from `from` is allowed; throws for an illegal one (a bug). */
export function nextState(from: ExchangeState, to: ExchangeState): ExchangeState {
  if (!TRANSITIONS[from].includes(to)) throw new Error(`illegal exchange state transition ${from} → ${to}`);
  return to;
}
