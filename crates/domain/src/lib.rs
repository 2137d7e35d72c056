//! Starling's domain: identifiers, validated values, entities and the events
//! that flow between the write model and the read model. Nothing here does I/O.

pub mod event;
pub mod id;
pub mod live;
pub mod media;
pub mod mention;
pub mod notification;
pub mod post;
mod text;
pub mod time;
pub mod user;
pub mod validation;

pub use event::{Event, EventEnvelope};
pub use id::{EventId, IdGenerator, MediaId, NotificationId, PostId, UserId};
pub use live::{LiveEvent, Topic};
pub use media::{Attachment, Media, MediaFile, MediaKind, MediaState};
pub use mention::{
    MAX_MENTIONS, Mention, MentionCandidate, find_mentions, mentioned_accounts, mentioned_keys,
};
pub use notification::{Notification, NotificationKind};
pub use post::{Post, PostText};
pub use time::Timestamp;
pub use user::{AccountStatus, Bio, DisplayName, Email, Handle, Password, Role, User, UserSummary};
pub use validation::{FieldError, ValidationErrors};
