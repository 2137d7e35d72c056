//! The blob-store contract.

use std::sync::Arc;

use bytes::Bytes;

use crate::ports::BlobStore;

#[macro_export]
macro_rules! blob_store_contract {
    ($make:expr) => {
        $crate::blob_store_contract!(@cases $make;
            a_file_reads_back_whole_and_in_ranges,
            missing_files_are_none_and_deleting_them_is_fine,
            a_deleted_file_is_gone,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some((blobs, _guard)) = ($make)().await else {
                    return;
                };
                $crate::ports::contract::blobs::$case(blobs).await;
            }
        )+
    };
}

fn content() -> Bytes {
    Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<u8>>())
}

pub async fn a_file_reads_back_whole_and_in_ranges(blobs: Arc<dyn BlobStore>) {
    let key = "0a1b2c3d";
    blobs.put(key, content()).await.unwrap();
    // The same bytes again (a second upload of one image): harmless.
    blobs.put(key, content()).await.unwrap();
    assert_eq!(blobs.get(key).await.unwrap().unwrap(), content());
    assert_eq!(blobs.size(key).await.unwrap(), Some(10_000));
    assert_eq!(
        blobs.get_range(key, 100..110).await.unwrap().unwrap(),
        content().slice(100..110)
    );
    assert_eq!(
        blobs.get_range(key, 9_990..10_000).await.unwrap().unwrap(),
        content().slice(9_990..)
    );
}

pub async fn missing_files_are_none_and_deleting_them_is_fine(blobs: Arc<dyn BlobStore>) {
    assert!(blobs.get("nothing-here").await.unwrap().is_none());
    assert!(blobs.size("nothing-here").await.unwrap().is_none());
    assert!(
        blobs
            .get_range("nothing-here", 0..1)
            .await
            .unwrap()
            .is_none()
    );
    blobs.delete("nothing-here").await.unwrap();
}

pub async fn a_deleted_file_is_gone(blobs: Arc<dyn BlobStore>) {
    blobs
        .put("doomed", Bytes::from_static(b"bye"))
        .await
        .unwrap();
    blobs.put("kept", Bytes::from_static(b"hi")).await.unwrap();
    blobs.delete("doomed").await.unwrap();
    assert!(blobs.get("doomed").await.unwrap().is_none());
    assert_eq!(
        blobs.get("kept").await.unwrap().unwrap(),
        Bytes::from_static(b"hi")
    );
}
